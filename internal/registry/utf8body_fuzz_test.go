package registry

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"
	"unicode/utf8"
)

// FuzzUTF8Body: the streaming check of request bodies agrees with utf8.Valid, however
// the body is split into reads.
func FuzzUTF8Body(f *testing.F) {
	for _, s := range []string{"", "{}", "caf\u00e9", "\U0001F600", "\xff", "\xe2\x82", "a\xe2\x82\xacb", "\xed\xa0\x80", "\xc0\xaf"} {
		f.Add([]byte(s), uint8(1))
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, body []byte, chunk uint8) {
		var r io.Reader = bytes.NewReader(body)
		if chunk%2 == 1 {
			r = iotest.OneByteReader(r)
		} else {
			r = io.LimitReader(r, int64(len(body))) // whole reads
		}
		got, err := io.ReadAll(&utf8Body{ReadCloser: io.NopCloser(r)})
		if utf8.Valid(body) {
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("valid body %q: read %q, %v", body, got, err)
			}
		} else if err != errBodyNotUTF8 {
			t.Fatalf("invalid body %q: err %v", body, err)
		}
	})
}
