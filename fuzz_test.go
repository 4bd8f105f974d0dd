package pgjet_test

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/subject"
)

// FuzzValidateStreamID: a stream id that ValidateStreamID accepts never injects anything
// into NATS: its subject has exactly the prefix's tokens plus category, type and stream,
// with no wildcard, white space or control byte, and parses back to the id; and the id
// comes back unchanged from the ce-subject header of a message as NATS encodes it.
func FuzzValidateStreamID(f *testing.F) {
	for _, s := range []string{"order-1", "order-a.b*c>d e", "café-9", "-x", " order-1", "order-1 ", "order-\r\nX: y",
		"inventory", "a\u00a0", "\u2028order-1", "order-\x00", "order-\xff", strings.Repeat("a", pgjet.MaxStreamIDLength+1)} {
		f.Add(s)
	}
	scheme := subject.Scheme{}
	f.Fuzz(func(t *testing.T, id string) {
		if err := pgjet.ValidateStreamID(id); err != nil {
			return
		}
		if !utf8.ValidString(id) || len(id) > pgjet.MaxStreamIDLength || strings.IndexFunc(id, unicode.IsControl) >= 0 {
			t.Fatalf("accepted %q", id)
		}
		subj, err := scheme.For(id, "pgjet.demo.order.OrderPlaced")
		if err != nil {
			t.Fatalf("%q: %v", id, err)
		}
		if toks := strings.Split(subj, "."); len(toks) != 5 {
			t.Fatalf("%q: subject %q has %d tokens", id, subj, len(toks))
		}
		for i := 0; i < len(subj); i++ {
			if c := subj[i]; c <= ' ' || c >= 0x7f || c == '*' || c == '>' {
				t.Fatalf("%q: subject %q holds byte %#x", id, subj, c)
			}
		}
		back, _, err := scheme.Parse(subj)
		if err != nil || back != id {
			t.Fatalf("%q: subject %q parses to %q, %v", id, subj, back, err)
		}
		h, err := nats.DecodeHeadersMsg([]byte("NATS/1.0\r\nce-subject: " + id + "\r\n\r\n"))
		if err != nil || len(h) != 1 || h.Get("ce-subject") != id {
			t.Fatalf("%q: header reads back as %v, %v", id, h, err)
		}
	})
}

// FuzzValidateEventType: an accepted event type is a valid subject token and header value
// as it is.
func FuzzValidateEventType(f *testing.F) {
	for _, s := range []string{"pgjet.demo.order.OrderPlaced", "a", "_._", "a..b", "1a", "a.>", "a b", "a.B\r\n", "é.A"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, typ string) {
		if err := pgjet.ValidateEventType(typ); err != nil {
			return
		}
		if len(typ) > pgjet.MaxEventTypeLength {
			t.Fatalf("accepted %d bytes", len(typ))
		}
		for i := 0; i < len(typ); i++ {
			c := typ[i]
			if !(c == '.' || c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
				t.Fatalf("accepted %q", typ)
			}
		}
		if _, err := (subject.Scheme{}).ByType(typ); err != nil {
			t.Fatalf("%q: %v", typ, err)
		}
	})
}

// FuzzExpectedVersion: expected_version comes from request bodies; reading it never
// panics and what it accepts is a valid expectation that writes back the same.
func FuzzExpectedVersion(f *testing.F) {
	for _, s := range []string{`"any"`, `"no_stream"`, `"exists"`, `0`, `12`, `"12"`, `-1`, `1.5`, `1e3`, `"-3"`, `null`, `"\u0000"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var e pgjet.ExpectedVersion
		if err := e.UnmarshalJSON(raw); err != nil {
			return
		}
		if e < 0 && e != pgjet.Any && e != pgjet.NoStream && e != pgjet.StreamExists {
			t.Fatalf("%q read as %d", raw, e)
		}
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		var again pgjet.ExpectedVersion
		if err := again.UnmarshalJSON(b); err != nil || again != e {
			t.Fatalf("%q: %s reads back as %d, %v", raw, b, again, err)
		}
	})
}
