package subscription

import (
	"testing"

	"github.com/nats-io/nats.go"
)

// Headers come from any publisher on the events stream: parsing never panics, and an
// accepted message has the required facts.
func FuzzParseHeaders(f *testing.F) {
	f.Add("e-1", "order-1", "pgjet.demo.order.OrderPlaced", "1", "7", "2026-11-26T10:00:00Z", "3")
	f.Add("", "", "", "", "", "", "")
	f.Add("x", "y", "z", "-1", "9223372036854775808", "not a time", "a")
	f.Fuzz(func(t *testing.T, id, stream, typ, version, position, at, schema string) {
		h := nats.Header{}
		for k, v := range map[string]string{HeaderID: id, HeaderStream: stream, HeaderType: typ, HeaderStreamVersion: version,
			HeaderPosition: position, HeaderTime: at, HeaderSchemaID: schema} {
			if v != "" {
				h.Set(k, v)
			}
		}
		e, err := parseHeaders(h)
		if err != nil {
			return
		}
		if e.ID == "" || e.StreamID == "" || e.Type == "" {
			t.Fatalf("accepted an event without its facts: %+v", e)
		}
	})
}
