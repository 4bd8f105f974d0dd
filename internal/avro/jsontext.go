package avro

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"unicode/utf16"
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

// parseJSON parses exactly one JSON value (RFC 8259), rejecting invalid
// UTF-8, lone surrogate escapes, duplicate keys, nesting deeper than MaxDepth
// and trailing data. It also returns the number of values in the tree.
// Errors wrap ErrMalformedJSON and give a byte offset.
func parseJSON(data []byte) (any, int, error) {
	p := jsonParser{data: data}
	p.skipSpace()
	v, err := p.value(0)
	if err == nil {
		p.skipSpace()
		if p.pos < len(data) {
			err = fmt.Errorf("data after the JSON value at offset %d", p.pos)
		}
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrMalformedJSON, err)
	}
	return v, p.nodes, nil
}

// jsonParser is a recursive-descent parser over one input. Array elements
// and object members collect on shared stacks, so that each finished
// container is allocated once at its final size.
type jsonParser struct {
	data    []byte
	pos     int
	nodes   int
	values  []any        // elements of the arrays being parsed
	members []jsonMember // members of the objects being parsed
	buf     []byte       // scratch for strings with escapes
}

// smallObject is the member count up to which duplicate keys are found by a
// linear scan rather than through the index.
const smallObject = 16

func (p *jsonParser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// unexpected reports the byte at p.pos, or the end of the input.
func (p *jsonParser) unexpected(want string) error {
	if p.pos >= len(p.data) {
		return fmt.Errorf("%w at offset %d, want %s", io.ErrUnexpectedEOF, p.pos, want)
	}
	c := p.data[p.pos]
	if c < utf8.RuneSelf {
		return fmt.Errorf("unexpected %q at offset %d, want %s", c, p.pos, want)
	}
	return fmt.Errorf("unexpected byte 0x%02x at offset %d, want %s", c, p.pos, want)
}

// value parses the value at p.pos, which is past any white space.
func (p *jsonParser) value(depth int) (any, error) {
	if p.pos >= len(p.data) {
		return nil, p.unexpected("a value")
	}
	p.nodes++
	switch c := p.data[p.pos]; c {
	case '{', '[':
		if depth >= MaxDepth {
			return nil, fmt.Errorf("nesting deeper than %d at offset %d", MaxDepth, p.pos)
		}
		p.pos++
		p.skipSpace()
		if c == '[' {
			return p.array(depth)
		}
		return p.object(depth)
	case '"':
		return p.string()
	case 't':
		return true, p.literal("true")
	case 'f':
		return false, p.literal("false")
	case 'n':
		return nil, p.literal("null")
	default:
		if c == '-' || c >= '0' && c <= '9' {
			return p.number()
		}
		return nil, p.unexpected("a value")
	}
}

func (p *jsonParser) literal(lit string) error {
	if len(p.data)-p.pos < len(lit) || string(p.data[p.pos:p.pos+len(lit)]) != lit {
		return fmt.Errorf("invalid literal at offset %d, want %s", p.pos, lit)
	}
	p.pos += len(lit)
	return nil
}

// array parses the elements after '['.
func (p *jsonParser) array(depth int) (any, error) {
	base := len(p.values)
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		return []any{}, nil
	}
	for {
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		p.values = append(p.values, v)
		p.skipSpace()
		if p.pos < len(p.data) && p.data[p.pos] == ',' {
			p.pos++
			p.skipSpace()
			continue
		}
		if p.pos < len(p.data) && p.data[p.pos] == ']' {
			p.pos++
			break
		}
		return nil, p.unexpected("',' or ']'")
	}
	arr := make([]any, len(p.values)-base)
	copy(arr, p.values[base:])
	clear(p.values[base:])
	p.values = p.values[:base]
	return arr, nil
}

// object parses the members after '{'.
func (p *jsonParser) object(depth int) (any, error) {
	base := len(p.members)
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		return &jsonObject{index: map[string]int{}}, nil
	}
	var index map[string]int // built once the object outgrows smallObject
	for {
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return nil, p.unexpected("an object key")
		}
		at := p.pos
		key, err := p.string()
		if err != nil {
			return nil, err
		}
		if p.hasKey(base, index, key) {
			return nil, fmt.Errorf("duplicate object key %s at offset %d", strconv.Quote(key), at)
		}
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return nil, p.unexpected("':'")
		}
		p.pos++
		p.skipSpace()
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		n := len(p.members) - base
		p.members = append(p.members, jsonMember{key: key, val: v})
		switch {
		case index != nil:
			index[key] = n
		case n+1 == smallObject:
			index = make(map[string]int, 2*smallObject)
			for i, m := range p.members[base:] {
				index[m.key] = i
			}
		}
		p.skipSpace()
		if p.pos < len(p.data) && p.data[p.pos] == ',' {
			p.pos++
			p.skipSpace()
			continue
		}
		if p.pos < len(p.data) && p.data[p.pos] == '}' {
			p.pos++
			break
		}
		return nil, p.unexpected("',' or '}'")
	}
	obj := &jsonObject{members: make([]jsonMember, len(p.members)-base), index: index}
	copy(obj.members, p.members[base:])
	clear(p.members[base:])
	p.members = p.members[:base]
	if obj.index == nil {
		obj.index = make(map[string]int, len(obj.members))
		for i, m := range obj.members {
			obj.index[m.key] = i
		}
	}
	return obj, nil
}

// hasKey reports whether the object whose members start at base already has
// key.
func (p *jsonParser) hasKey(base int, index map[string]int, key string) bool {
	if index != nil {
		_, ok := index[key]
		return ok
	}
	for _, m := range p.members[base:] {
		if m.key == key {
			return true
		}
	}
	return false
}

// number parses -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? into a
// json.Number holding its text.
func (p *jsonParser) number() (any, error) {
	d, start := p.data, p.pos
	i := start
	if d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && d[i] >= '1' && d[i] <= '9':
		i = digits(d, i+1)
	default:
		p.pos = i
		return nil, p.unexpected("a digit")
	}
	if i < len(d) && d[i] == '.' {
		i++
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			p.pos = i
			return nil, p.unexpected("a digit")
		}
		i = digits(d, i+1)
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			p.pos = i
			return nil, p.unexpected("a digit")
		}
		i = digits(d, i+1)
	}
	p.pos = i
	return json.Number(d[start:i]), nil
}

func digits(d []byte, i int) int {
	for i < len(d) && d[i] >= '0' && d[i] <= '9' {
		i++
	}
	return i
}

// string parses the string at p.pos, which is at its opening quote.
func (p *jsonParser) string() (string, error) {
	d := p.data
	start := p.pos + 1
	i := start
	for i < len(d) {
		c := d[i]
		switch {
		case c == '"':
			p.pos = i + 1
			return string(d[start:i]), nil
		case c == '\\':
			p.buf = append(p.buf[:0], d[start:i]...)
			return p.escapedString(i)
		case c < 0x20:
			return "", fmt.Errorf("control character 0x%02x in string at offset %d", c, i)
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(d[i:])
			if r == utf8.RuneError && size == 1 {
				return "", fmt.Errorf("invalid UTF-8 at offset %d", i)
			}
			i += size
		}
	}
	p.pos = i
	return "", p.unexpected("'\"'")
}

// escapedString finishes a string from offset i on, decoding escapes and
// checking UTF-8, with what came before in p.buf.
func (p *jsonParser) escapedString(i int) (string, error) {
	d := p.data
	for i < len(d) {
		c := d[i]
		switch {
		case c == '"':
			p.pos = i + 1
			return string(p.buf), nil
		case c == '\\':
			n, err := p.escape(i)
			if err != nil {
				return "", err
			}
			i += n
		case c < 0x20:
			return "", fmt.Errorf("control character 0x%02x in string at offset %d", c, i)
		case c < utf8.RuneSelf:
			p.buf = append(p.buf, c)
			i++
		default:
			r, size := utf8.DecodeRune(d[i:])
			if r == utf8.RuneError && size == 1 {
				return "", fmt.Errorf("invalid UTF-8 at offset %d", i)
			}
			p.buf = append(p.buf, d[i:i+size]...)
			i += size
		}
	}
	p.pos = i
	return "", p.unexpected("'\"'")
}

// escape decodes the escape sequence at offset i into p.buf and returns its
// length. Surrogates must come in pairs.
func (p *jsonParser) escape(i int) (int, error) {
	d := p.data
	if i+1 >= len(d) {
		p.pos = i + 1
		return 0, p.unexpected("an escape")
	}
	switch d[i+1] {
	case '"', '\\', '/':
		p.buf = append(p.buf, d[i+1])
	case 'b':
		p.buf = append(p.buf, '\b')
	case 'f':
		p.buf = append(p.buf, '\f')
	case 'n':
		p.buf = append(p.buf, '\n')
	case 'r':
		p.buf = append(p.buf, '\r')
	case 't':
		p.buf = append(p.buf, '\t')
	case 'u':
		r, ok := hex4(d, i+2)
		if !ok {
			return 0, fmt.Errorf("invalid \\u escape at offset %d", i)
		}
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return 0, fmt.Errorf("lone low surrogate \\u%04X at offset %d", r, i)
		case r >= 0xD800 && r <= 0xDBFF:
			if i+7 < len(d) && d[i+6] == '\\' && d[i+7] == 'u' {
				if lo, ok := hex4(d, i+8); ok && lo >= 0xDC00 && lo <= 0xDFFF {
					p.buf = utf8.AppendRune(p.buf, utf16.DecodeRune(r, lo))
					return 12, nil
				}
			}
			return 0, fmt.Errorf("lone high surrogate \\u%04X at offset %d", r, i)
		}
		p.buf = utf8.AppendRune(p.buf, r)
		return 6, nil
	default:
		return 0, fmt.Errorf("invalid escape at offset %d", i)
	}
	return 2, nil
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
