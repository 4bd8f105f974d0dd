package avro

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// jsonSeeds are inputs for the parser's differential tests: the other tests'
// inputs, and edge cases of the grammar and of our extra rules.
func jsonSeeds() []string {
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	deepObj := func(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }
	var many, manyDup strings.Builder
	many.WriteString("{")
	for i := range 40 {
		if i > 0 {
			many.WriteString(",")
		}
		fmt.Fprintf(&many, `"k%d":%d`, i, i)
	}
	manyDup.WriteString(many.String() + `,"k3":0}`)
	many.WriteString("}")
	return []string{
		validOrder, validAll, `{}`, `null`, `[]`, `{"v":null}`, `{"v":{"int":1}}`, `{"v":"s"}`,
		`{"v":{"a":1.5,"b":null}}`, `{"v":[{"v":[]},{"v":{"map":{}}}]}`, `{"v":{"x":"\ud83d\ude00"}}`,
		`{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10","customer_id":"cust-0042",
		"customer_email":"ada@example.com","items":[{"sku":"SKU-TEA-001","quantity":2,"unit_price_cents":450},
		{"sku":"SKU-MUG-002","quantity":1,"unit_price_cents":1299}],"placed_at":"2026-11-26T09:00:00Z"}`,
		// TestFromJSONMalformed
		``, `   `, `{"v":}`, `{"v":"x"`, `{"v":"x"} {}`, `{"v":"x"}x`, `{"v":"x","v":"y"}`,
		"{\"v\":\"\xff\xfe\"}", "{\"v\":null}\xff", `{"v":"\ud800"}`, `{"v":"\udc00x"}`,
		`{"v":"\ud800\u0041"}`, `{'v':'x'}`, `{"v":NaN}`, `{"v":"\ud83d\ude00 \"\\\/"}`,
		// nesting
		deep(MaxDepth), deep(MaxDepth + 1), deepObj(MaxDepth), deepObj(MaxDepth + 1),
		`{"v":` + deep(MaxDepth-1) + `}`, `{"v":` + deep(MaxDepth) + `}`,
		// literals and white space
		`true`, `false`, ` null `, "\t\n\r 1 \r\n\t", `nul`, `nulll`, `tru`, `truex`, `True`, `[true,false,null]`,
		"\f1", "\v1", "\u00a01", "\ufeff1", "1\x00", "\x00",
		// numbers
		`0`, `-0`, `-0.0e+0`, `1E5`, `1e-5`, `1.5E+10`, `123456789012345678901234567890`, `0.000001`,
		`-`, `01`, `-01`, `1.`, `.5`, `+1`, `1e`, `1e+`, `1.e5`, `0x10`, `1_000`, `Infinity`, `-Infinity`,
		`[1,2.5,-3e2]`, `[-]`, `[1.]`, `[01]`, `1 2`, `[1 2]`,
		// strings
		`""`, `"`, `"\"`, `"\\"`, `"\/\b\f\n\r\t"`, `"\x"`, `"\u12"`, `"\u12g4"`, `"\u0000"`, `"\u001f"`,
		"\"\x1f\"", "\"\x7f\"", "\"\t\"", `"\uD83D\uDE00"`, `"\uDBFF\uDFFF"`, `"\uD800\uD800"`,
		`"\uD800\uDBFF"`, `"\uDC00\uD800"`, `"\uD800\"`, `"\uD800\u"`, `"\uD800\uDC0"`, `"\uD800x"`,
		`"\uFFFF\uFFFE"`, `"\u2028\u2029"`, `"é ü 😀"`, "\"\xed\xa0\x80\"", "\"\xc0\xaf\"", "\"\xf4\x90\x80\x80\"",
		"\"\xe2\x82\"", `"a\u0061"`, "é", `["a",`, `["a"`,
		// objects
		`{"a":1,"\u0061":2}`, `{"a":1,"b":{"a":2}}`, `{"":1}`, `{"":1,"":2}`, many.String(), manyDup.String(),
		`[1,]`, `{"a":1,}`, `{,}`, `[,1]`, `{"a" 1}`, `{"a":1 "b":2}`, `{"a"}`, `{"a":}`, `{1:2}`, `{null:1}`,
		`{"a":1}}`, `[1]]`, `{"a":[}`, `[{]`, `{"a":1`, `{"a"`, `{`, `[`, `]`, `}`, `:`, `,`,
	}
}

// FuzzParseJSONMatchesEncodingJSON: parseJSON accepts exactly what the
// encoding/json reference (parseJSONReference: Decoder.Token, plus our
// UTF-8, surrogate, duplicate key and depth rules) accepts, builds the same
// tree and counts the same nodes. What it accepts is also json.Valid.
func FuzzParseJSONMatchesEncodingJSON(f *testing.F) {
	for _, seed := range jsonSeeds() {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in := bytes.Clone(data)
		got, gotNodes, err := parseJSON(data)
		require.Equal(t, in, data, "parseJSON modified its input")
		want, wantNodes, wantErr := parseJSONReference(data)
		if wantErr != nil {
			require.Error(t, err, "reference rejected %q: %v", data, wantErr)
			require.ErrorIs(t, err, ErrMalformedJSON)
			require.Contains(t, err.Error(), "offset ")
			return
		}
		require.NoError(t, err, "reference accepted %q", data)
		require.True(t, json.Valid(data))
		require.True(t, utf8.Valid(data))
		require.Equal(t, want, got)
		require.Equal(t, wantNodes, gotNodes)
	})
}

// parseJSONReference is the Decoder.Token based parseJSON that the
// hand-written parser replaced, kept as the fuzz test's reference.
func parseJSONReference(data []byte) (any, int, error) {
	if !utf8.Valid(data) {
		return nil, 0, fmt.Errorf("%w: invalid UTF-8", ErrMalformedJSON)
	}
	if err := refCheckSurrogates(data); err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrMalformedJSON, err)
	}
	p := refParser{dec: json.NewDecoder(bytes.NewReader(data))}
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

type refParser struct {
	dec   *json.Decoder
	nodes int
}

func (p *refParser) value(depth int) (any, error) {
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

// refCheckSurrogates rejects \u escapes that encode a lone UTF-16 surrogate,
// which encoding/json would silently turn into U+FFFD.
func refCheckSurrogates(data []byte) error {
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
