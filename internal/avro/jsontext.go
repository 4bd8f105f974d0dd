package avro

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// A parsed JSON value is one of: nil, bool, json.Number, string, []any,
// *jsonObject. Objects keep their keys in input order.

type jsonObject struct {
	members []jsonMember
	index   map[string]int
}

type jsonMember struct {
	key string
	val any
}

func (o *jsonObject) get(key string) (any, bool) {
	i, ok := o.index[key]
	if !ok {
		return nil, false
	}
	return o.members[i].val, true
}

// parseJSON parses exactly one JSON value, rejecting invalid UTF-8, lone
// surrogate escapes, duplicate keys, nesting deeper than MaxDepth and
// trailing data. It also returns the number of values in the tree.
func parseJSON(data []byte) (any, int, error) {
	if !utf8.Valid(data) {
		return nil, 0, fmt.Errorf("%w: invalid UTF-8", ErrMalformedJSON)
	}
	if err := checkSurrogates(data); err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrMalformedJSON, err)
	}
	p := jsonParser{dec: json.NewDecoder(bytes.NewReader(data))}
	p.dec.UseNumber()
	v, err := p.value(0)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrMalformedJSON, err)
	}
	if _, err := p.dec.Token(); !errors.Is(err, io.EOF) {
		return nil, 0, fmt.Errorf("%w: data after the JSON value at offset %d", ErrMalformedJSON, p.dec.InputOffset())
	}
	return v, p.nodes, nil
}

type jsonParser struct {
	dec   *json.Decoder
	nodes int
}

func (p *jsonParser) value(depth int) (any, error) {
	tok, err := p.dec.Token()
	if errors.Is(err, io.EOF) {
		return nil, io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, err
	}
	p.nodes++
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil
	}
	if depth >= MaxDepth {
		return nil, fmt.Errorf("nesting deeper than %d at offset %d", MaxDepth, p.dec.InputOffset())
	}
	switch d {
	case '[':
		arr := []any{}
		for p.dec.More() {
			v, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		if _, err := p.dec.Token(); err != nil { // ']'
			return nil, err
		}
		return arr, nil
	case '{':
		obj := &jsonObject{index: map[string]int{}}
		for p.dec.More() {
			tok, err := p.dec.Token()
			if err != nil {
				return nil, err
			}
			key, ok := tok.(string)
			if !ok {
				return nil, fmt.Errorf("object key is %v, want a string", tok)
			}
			if _, dup := obj.index[key]; dup {
				return nil, fmt.Errorf("duplicate object key %s at offset %d", strconv.Quote(key), p.dec.InputOffset())
			}
			v, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			obj.index[key] = len(obj.members)
			obj.members = append(obj.members, jsonMember{key: key, val: v})
		}
		if _, err := p.dec.Token(); err != nil { // '}'
			return nil, err
		}
		return obj, nil
	default:
		return nil, fmt.Errorf("unexpected %v at offset %d", d, p.dec.InputOffset())
	}
}

// checkSurrogates rejects \u escapes that encode a lone UTF-16 surrogate,
// which encoding/json would silently turn into U+FFFD. Other syntax errors
// are left to the decoder.
func checkSurrogates(data []byte) error {
	inString := false
	for i := 0; i < len(data); i++ {
		c := data[i]
		if !inString {
			if c == '"' {
				inString = true
			}
			continue
		}
		switch c {
		case '"':
			inString = false
		case '\\':
			if i+1 >= len(data) {
				return nil
			}
			if data[i+1] != 'u' {
				i++
				continue
			}
			r, ok := hex4(data, i+2)
			if !ok {
				return nil
			}
			i += 5
			switch {
			case r >= 0xDC00 && r <= 0xDFFF:
				return fmt.Errorf("lone low surrogate \\u%04X at offset %d", r, i-5)
			case r >= 0xD800 && r <= 0xDBFF:
				if i+2 < len(data) && data[i+1] == '\\' && data[i+2] == 'u' {
					if lo, ok := hex4(data, i+3); ok && lo >= 0xDC00 && lo <= 0xDFFF {
						i += 6
						continue
					}
				}
				return fmt.Errorf("lone high surrogate \\u%04X at offset %d", r, i-5)
			}
		}
	}
	return nil
}

func hex4(data []byte, at int) (rune, bool) {
	if at+4 > len(data) {
		return 0, false
	}
	var r rune
	for _, c := range data[at : at+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return r, true
}

// jsonKind names the JSON kind of a parsed value for messages.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case *jsonObject:
		return "object"
	default:
		return fmt.Sprintf("%T", v)
	}
}

const maxShownValue = 64

// shortJSON renders a parsed value as compact JSON, cut after about
// maxShownValue bytes.
func shortJSON(v any) string {
	var b []byte
	b = appendShort(b, v)
	if len(b) > maxShownValue {
		cut := maxShownValue
		for cut > 0 && !utf8.RuneStart(b[cut]) {
			cut--
		}
		b = append(b[:cut:cut], "…"...)
	}
	return string(b)
}

func appendShort(b []byte, v any) []byte {
	if len(b) > maxShownValue {
		return b
	}
	switch v := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		return strconv.AppendBool(b, v)
	case json.Number:
		return append(b, v...)
	case string:
		if len(v) > maxShownValue {
			v = v[:maxShownValue+1]
		}
		return appendJSONString(b, v)
	case []any:
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendShort(b, e)
			if len(b) > maxShownValue {
				return b
			}
		}
		return append(b, ']')
	case *jsonObject:
		b = append(b, '{')
		for i, m := range v.members {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, m.key)
			b = append(b, ':')
			b = appendShort(b, m.val)
			if len(b) > maxShownValue {
				return b
			}
		}
		return append(b, '}')
	default:
		return fmt.Appendf(b, "%v", v)
	}
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD;
// HTML characters are not escaped.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
