package jsontext

import "testing"

func TestLoneSurrogate(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want int
	}{
		{`"plain"`, -1},
		{`"\u00e9 and \ud83d\ude00"`, -1}, // a pair is fine
		{`"\\ud800"`, -1},                 // an escaped backslash, then text
		{`"\ud800"`, 1},                   // a high alone
		{`"ab\ude00"`, 3},                 // a low alone
		{`"\ud800\u0041"`, 1},             // a high followed by no low
		{`"\ud83d\ude00\ud800x"`, 13},     // a pair, then a high alone
		{`{"a":"\n","b":"\udfff"}`, 15},   // in a later member
		{`"\u12"`, -1},                    // malformed escapes are the decoder's to refuse
	} {
		if got := LoneSurrogate([]byte(tc.raw)); got != tc.want {
			t.Errorf("LoneSurrogate(%s) = %d, want %d", tc.raw, got, tc.want)
		}
	}
}

func FuzzLoneSurrogate(f *testing.F) {
	f.Add([]byte(`"\ud83d\ude00"`))
	f.Add([]byte(`"\ud800"`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if at := LoneSurrogate(raw); at >= len(raw) || at < -1 {
			t.Fatalf("offset %d out of %d bytes", at, len(raw))
		}
	})
}
