package subject

import (
	"fmt"
	"strings"
)

// escapeChar starts a two-hex-digit escape in an encoded token.
const escapeChar = '~'

// emptyToken is the encoding of the empty string.
const emptyToken = "~"

const upperHex = "0123456789ABCDEF"

// passesThrough reports whether byte c stands for itself in an encoded token.
func passesThrough(c byte) bool {
	if c < 0x21 || c > 0x7E {
		return false
	}
	switch c {
	case '.', '*', '>', escapeChar:
		return false
	}
	return true
}

// EncodeToken encodes s as a single NATS subject token. The result is never
// empty and never contains '.', '*', '>', whitespace, control characters or
// non-ASCII bytes; [DecodeToken] reverses it. The empty string encodes as "~".
//
//	EncodeToken("order-123") == "order-123"
//	EncodeToken("a.b c")     == "a~2Eb~20c"
//	EncodeToken("é")         == "~C3~A9"
func EncodeToken(s string) string {
	if s == "" {
		return emptyToken
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if !passesThrough(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if passesThrough(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte(escapeChar)
		b.WriteByte(upperHex[c>>4])
		b.WriteByte(upperHex[c&0x0F])
	}
	return b.String()
}

// DecodeToken reverses [EncodeToken]. It accepts only tokens in the exact form
// EncodeToken produces (uppercase hex, no escapes of bytes that stand for
// themselves), so DecodeToken(tok) succeeds only if
// EncodeToken(result) == tok. Errors wrap [ErrInvalidToken].
func DecodeToken(tok string) (string, error) {
	if tok == emptyToken {
		return "", nil
	}
	if tok == "" {
		return "", fmt.Errorf("%w: empty token", ErrInvalidToken)
	}
	if strings.IndexByte(tok, escapeChar) < 0 {
		for i := 0; i < len(tok); i++ {
			if !passesThrough(tok[i]) {
				return "", fmt.Errorf("%w: byte 0x%02X at offset %d of %q must be escaped", ErrInvalidToken, tok[i], i, tok)
			}
		}
		return tok, nil
	}
	var b strings.Builder
	b.Grow(len(tok))
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c != escapeChar {
			if !passesThrough(c) {
				return "", fmt.Errorf("%w: byte 0x%02X at offset %d of %q must be escaped", ErrInvalidToken, c, i, tok)
			}
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(tok) {
			return "", fmt.Errorf("%w: truncated escape at offset %d of %q", ErrInvalidToken, i, tok)
		}
		hi, ok1 := unhex(tok[i+1])
		lo, ok2 := unhex(tok[i+2])
		if !ok1 || !ok2 {
			return "", fmt.Errorf("%w: escape at offset %d of %q is not two uppercase hex digits", ErrInvalidToken, i, tok)
		}
		d := hi<<4 | lo
		if passesThrough(d) {
			return "", fmt.Errorf("%w: escape at offset %d of %q encodes %q, which must not be escaped", ErrInvalidToken, i, tok, d)
		}
		b.WriteByte(d)
		i += 2
	}
	return b.String(), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
