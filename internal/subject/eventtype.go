package subject

import (
	"fmt"
	"strings"
)

// typeSep replaces '.' of an Avro full name inside the type token.
const typeSep = ':'

// ValidateType reports whether eventType is an Avro full name: one or more
// dot-separated names, each matching [A-Za-z_][A-Za-z0-9_]*. Errors wrap
// [ErrInvalidType].
func ValidateType(eventType string) error {
	if eventType == "" {
		return fmt.Errorf("%w: empty", ErrInvalidType)
	}
	start := 0
	for i := 0; i <= len(eventType); i++ {
		if i < len(eventType) && eventType[i] != '.' {
			c := eventType[i]
			ok := c == '_' || ('A' <= c && c <= 'Z') || ('a' <= c && c <= 'z') || (i > start && '0' <= c && c <= '9')
			if !ok {
				return fmt.Errorf("%w: %q: byte %q at offset %d is not allowed in an Avro name", ErrInvalidType, eventType, c, i)
			}
			continue
		}
		if i == start {
			return fmt.Errorf("%w: %q: empty name component at offset %d", ErrInvalidType, eventType, i)
		}
		start = i + 1
	}
	return nil
}

// typeToken maps a validated Avro full name to its subject token.
func typeToken(eventType string) (string, error) {
	if err := ValidateType(eventType); err != nil {
		return "", err
	}
	return strings.ReplaceAll(eventType, ".", string(typeSep)), nil
}

// typeFromToken reverses typeToken.
func typeFromToken(tok string) (string, error) {
	if strings.IndexByte(tok, '.') >= 0 {
		return "", fmt.Errorf("%w: type token %q contains '.'", ErrInvalidType, tok)
	}
	t := strings.ReplaceAll(tok, string(typeSep), ".")
	if err := ValidateType(t); err != nil {
		return "", err
	}
	return t, nil
}
