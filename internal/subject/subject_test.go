package subject_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/subject"
)

func TestEncodeToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
	}{
		{"order-123", "order-123"},
		{"", "~"},
		{"a.b", "a~2Eb"},
		{"a b", "a~20b"},
		{"*", "~2A"},
		{">", "~3E"},
		{"~", "~7E"},
		{"~7E", "~7E7E"},
		{"$x", "$x"},
		{"tab\there", "tab~09here"},
		{"nl\n", "nl~0A"},
		{"\x00\x7f", "~00~7F"},
		{"café", "caf~C3~A9"},
		{"日", "~E6~97~A5"},
		{"!\"#%&'()+,/:;<=?@[\\]^_`{|}", "!\"#%&'()+,/:;<=?@[\\]^_`{|}"},
		{"\xff", "~FF"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got := subject.EncodeToken(tt.in)
			require.Equal(t, tt.want, got)
			back, err := subject.DecodeToken(got)
			require.NoError(t, err)
			require.Equal(t, tt.in, back)
		})
	}
}

func TestDecodeTokenRejectsNonCanonical(t *testing.T) {
	t.Parallel()
	for _, tok := range []string{
		"",      // empty
		"a.b",   // raw dot
		"a b",   // raw space
		"*",     // raw wildcard
		">",     // raw wildcard
		"é",     // raw non-ASCII
		"~",     // fine on its own (empty string) but not inside a token: see below
		"a~",    // truncated
		"a~4",   // truncated
		"~2e",   // lowercase hex
		"~G0",   // not hex
		"~41",   // 'A' must not be escaped
		"~7E~",  // trailing escape char
		"~~7E",  // escape char escaped by nothing
		"x\x00", // raw control
	} {
		if tok == "~" {
			got, err := subject.DecodeToken(tok)
			require.NoError(t, err)
			require.Equal(t, "", got)
			continue
		}
		_, err := subject.DecodeToken(tok)
		require.ErrorIs(t, err, subject.ErrInvalidToken, "token %q", tok)
	}
}

func TestCategory(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"order-123":   "order",
		"order":       "order",
		"order-1-2":   "order",
		"-x":          "",
		"a.b-c":       "a.b",
		"payment_ok-": "payment_ok",
	}
	for in, want := range tests {
		require.Equal(t, want, subject.Category(in), "Category(%q)", in)
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	s, err := subject.New("")
	require.NoError(t, err)
	require.Equal(t, subject.DefaultPrefix, s.Prefix)

	for _, ok := range []string{"events", "acme.prod.events", "a-b_c:d"} {
		s, err := subject.New(ok)
		require.NoError(t, err, ok)
		require.Equal(t, ok, s.Prefix)
	}
	for _, bad := range []string{".", "a.", ".a", "a..b", "a.*", "a.>", "a b", "a\tb", "$JS.events", "é"} {
		_, err := subject.New(bad)
		require.ErrorIs(t, err, subject.ErrInvalidPrefix, "prefix %q", bad)
	}
}

func TestForAndParse(t *testing.T) {
	t.Parallel()
	custom, err := subject.New("acme.prod.ev")
	require.NoError(t, err)
	tests := []struct {
		name      string
		scheme    subject.Scheme
		stream    string
		eventType string
		want      string
	}{
		{"simple", subject.Scheme{}, "order-123", "shop.order.OrderPlaced", "pgjet.events.order.shop:order:OrderPlaced.order-123"},
		{"no namespace", subject.Scheme{}, "order-123", "OrderPlaced", "pgjet.events.order.OrderPlaced.order-123"},
		{"no dash", subject.Scheme{}, "inventory", "Restocked", "pgjet.events.inventory.Restocked.inventory"},
		{"dot in id", subject.Scheme{}, "order-1.5", "A", "pgjet.events.order.A.order-1~2E5"},
		{"dot in category", subject.Scheme{}, "a.b-1", "A", "pgjet.events.a~2Eb.A.a~2Eb-1"},
		{"space", subject.Scheme{}, "user-a b", "A", "pgjet.events.user.A.user-a~20b"},
		{"utf8", subject.Scheme{}, "café-9", "A", "pgjet.events.caf~C3~A9.A.caf~C3~A9-9"},
		{"empty category", subject.Scheme{}, "-x", "A", "pgjet.events.~.A.-x"},
		{"wildcards", subject.Scheme{}, "q-*>", "A", "pgjet.events.q.A.q-~2A~3E"},
		{"tilde", subject.Scheme{}, "t~1", "A", "pgjet.events.t~7E1.A.t~7E1"},
		{"custom prefix", custom, "order-1", "x_1.Y", "acme.prod.ev.order.x_1:Y.order-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.scheme.For(tt.stream, tt.eventType)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
			stream, typ, err := tt.scheme.Parse(got)
			require.NoError(t, err)
			require.Equal(t, tt.stream, stream)
			require.Equal(t, tt.eventType, typ)
		})
	}
}

func TestForErrors(t *testing.T) {
	t.Parallel()
	var s subject.Scheme
	_, err := s.For("", "A")
	require.ErrorIs(t, err, subject.ErrEmptyStreamID)
	for _, bad := range []string{"", ".", "a.", ".a", "a..b", "1a", "a.1b", "a-b", "a b", "a:b", "a*", "é"} {
		_, err := s.For("s-1", bad)
		require.ErrorIs(t, err, subject.ErrInvalidType, "type %q", bad)
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	var s subject.Scheme
	for _, bad := range []string{
		"",
		"pgjet.events",
		"pgjet.events.",
		"pgjet.eventsx.order.A.order-1",
		"other.events.order.A.order-1",
		"pgjet.events.order.A",               // too few tokens
		"pgjet.events.order.A.order-1.x",     // too many tokens
		"pgjet.events.order.A.",              // empty stream token
		"pgjet.events.order.A.~",             // empty stream id
		"pgjet.events.order.1A.order-1",      // bad type
		"pgjet.events.order.a::b.order-1",    // bad type
		"pgjet.events.order.A.order-~2e",     // lowercase escape
		"pgjet.events.order.A.order-~41",     // non-canonical escape
		"pgjet.events.other.A.order-1",       // category mismatch
		"pgjet.events.order-1.A.order-1",     // category with dash
		"pgjet.events.*.A.order-1",           // wildcard, not a subject
		"pgjet.events.order.A.order 1",       // raw space
		"pgjet.events.order.shop.A.order-1",  // raw dot in type = extra token
		"pgjet.events.~.A.x",                 // empty category for id without '-'
		"pgjet.events.order.A.order-1\x00",   // raw control char
		"pgjet.events.order.A.order-caf\xc3", // raw non-ASCII
	} {
		_, _, err := s.Parse(bad)
		require.ErrorIs(t, err, subject.ErrInvalidSubject, "subject %q", bad)
	}
}

func TestFilters(t *testing.T) {
	t.Parallel()
	var s subject.Scheme
	require.Equal(t, "pgjet.events.>", s.All())
	require.Equal(t, []string{"pgjet.events.>"}, s.StreamSubjects())

	got, err := s.ByCategory("order")
	require.NoError(t, err)
	require.Equal(t, "pgjet.events.order.*.*", got)
	got, err = s.ByCategory("a.b")
	require.NoError(t, err)
	require.Equal(t, "pgjet.events.a~2Eb.*.*", got)
	_, err = s.ByCategory("order-1")
	require.ErrorIs(t, err, subject.ErrInvalidCategory)

	got, err = s.ByType("shop.order.OrderPlaced")
	require.NoError(t, err)
	require.Equal(t, "pgjet.events.*.shop:order:OrderPlaced.*", got)
	_, err = s.ByType("shop..x")
	require.ErrorIs(t, err, subject.ErrInvalidType)

	got, err = s.ByStream("order-1.5")
	require.NoError(t, err)
	require.Equal(t, "pgjet.events.order.*.order-1~2E5", got)
	_, err = s.ByStream("")
	require.ErrorIs(t, err, subject.ErrEmptyStreamID)

	got, err = s.ByCategoryAndType("order", "shop.order.OrderPlaced")
	require.NoError(t, err)
	require.Equal(t, "pgjet.events.order.shop:order:OrderPlaced.*", got)
	_, err = s.ByCategoryAndType("order", "")
	require.ErrorIs(t, err, subject.ErrInvalidType)
	_, err = s.ByCategoryAndType("a-b", "A")
	require.ErrorIs(t, err, subject.ErrInvalidCategory)
}

// TestFiltersMatch checks each filter against subjects with a NATS-style
// matcher, so the filters select what their names say and nothing else.
func TestFiltersMatch(t *testing.T) {
	t.Parallel()
	var s subject.Scheme
	type ev struct{ stream, typ string }
	events := []ev{
		{"order-1", "shop.OrderPlaced"},
		{"order-1", "shop.OrderShipped"},
		{"order-2", "shop.OrderPlaced"},
		{"order.x-1", "shop.OrderPlaced"},
		{"user-1", "shop.OrderPlaced"},
		{"order", "shop.OrderPlaced"},
	}
	subjects := make([]string, len(events))
	for i, e := range events {
		var err error
		subjects[i], err = s.For(e.stream, e.typ)
		require.NoError(t, err)
	}
	check := func(filter string, want func(ev) bool) {
		t.Helper()
		for i, e := range events {
			require.Equal(t, want(e), natsMatch(filter, subjects[i]), "filter %q subject %q", filter, subjects[i])
		}
	}
	check(s.All(), func(ev) bool { return true })
	f, _ := s.ByCategory("order")
	check(f, func(e ev) bool { return subject.Category(e.stream) == "order" })
	f, _ = s.ByType("shop.OrderPlaced")
	check(f, func(e ev) bool { return e.typ == "shop.OrderPlaced" })
	f, _ = s.ByStream("order-1")
	check(f, func(e ev) bool { return e.stream == "order-1" })
	f, _ = s.ByCategoryAndType("order", "shop.OrderShipped")
	check(f, func(e ev) bool { return subject.Category(e.stream) == "order" && e.typ == "shop.OrderShipped" })
}

// natsMatch implements NATS subject matching for literal subjects.
func natsMatch(filter, subj string) bool {
	ft, st := strings.Split(filter, "."), strings.Split(subj, ".")
	for i, f := range ft {
		if f == ">" {
			return len(st) > i
		}
		if i >= len(st) || (f != "*" && f != st[i]) {
			return false
		}
	}
	return len(ft) == len(st)
}

func FuzzTokenRoundTrip(f *testing.F) {
	for _, s := range []string{"", "order-123", "a.b c", "~", "~7E", "*>", "café", "\x00\xff", "$JS"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok := subject.EncodeToken(s)
		if tok == "" {
			t.Fatalf("EncodeToken(%q) is empty", s)
		}
		if strings.ContainsAny(tok, ".*> \t\r\n\f\v") {
			t.Fatalf("EncodeToken(%q) = %q contains a forbidden character", s, tok)
		}
		for i := 0; i < len(tok); i++ {
			if tok[i] < 0x21 || tok[i] > 0x7E {
				t.Fatalf("EncodeToken(%q) = %q contains byte 0x%02X", s, tok, tok[i])
			}
		}
		back, err := subject.DecodeToken(tok)
		if err != nil {
			t.Fatalf("DecodeToken(EncodeToken(%q)=%q): %v", s, tok, err)
		}
		if back != s {
			t.Fatalf("round trip of %q gave %q", s, back)
		}
		// Decoding arbitrary input either fails or is the inverse of encoding.
		if d, err := subject.DecodeToken(s); err == nil && subject.EncodeToken(d) != s {
			t.Fatalf("DecodeToken(%q) = %q, which encodes to %q", s, d, subject.EncodeToken(d))
		}
	})
}

func FuzzParse(f *testing.F) {
	f.Add("pgjet.events", "order-123", "shop.order.OrderPlaced", "pgjet.events.order.shop:order:OrderPlaced.order-123")
	f.Add("acme.ev", "-x", "A", "acme.ev.~.A.-x")
	f.Add("", "café-1.2", "a_1.B", "pgjet.events.x.A.y")
	f.Fuzz(func(t *testing.T, prefix, stream, typ, raw string) {
		s, err := subject.New(prefix)
		if err != nil {
			return
		}
		// Arbitrary input must not panic and, when accepted, must round-trip.
		if st, ty, err := s.Parse(raw); err == nil {
			back, err := s.For(st, ty)
			if err != nil {
				t.Fatalf("Parse(%q) = (%q, %q) but For fails: %v", raw, st, ty, err)
			}
			if back != raw {
				t.Fatalf("Parse(%q) = (%q, %q), For gives %q", raw, st, ty, back)
			}
		}
		subj, err := s.For(stream, typ)
		if err != nil {
			return
		}
		if strings.Count(subj, ".") != strings.Count(s.Prefix, ".")+3 {
			t.Fatalf("For(%q, %q) = %q has the wrong number of tokens", stream, typ, subj)
		}
		st, ty, err := s.Parse(subj)
		if err != nil {
			t.Fatalf("Parse(For(%q, %q) = %q): %v", stream, typ, subj, err)
		}
		if st != stream || ty != typ {
			t.Fatalf("Parse(For(%q, %q)) = (%q, %q)", stream, typ, st, ty)
		}
	})
}
