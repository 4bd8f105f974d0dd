package projection

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// fuzzMsg is a JetStream message with the given headers and payload; other methods are
// not called by parseHeaders.
type fuzzMsg struct {
	jetstream.Msg
	h    nats.Header
	data []byte
}

func (m fuzzMsg) Headers() nats.Header { return m.h }
func (m fuzzMsg) Data() []byte         { return m.data }
func (m fuzzMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: 7}}, nil
}

// FuzzParseHeaders: headers come from any publisher on the events stream; parsing never
// panics, and an accepted message has its identifying facts.
func FuzzParseHeaders(f *testing.F) {
	f.Add("e-1", "order-1", "pgjet.demo.order.OrderPlaced", "1", "7", "2026-11-26T10:00:00Z", []byte{0, 0, 0, 0, 1, 2})
	f.Add("", "", "", "", "", "", []byte(nil))
	f.Add("x", "y", "z", "-1", "9223372036854775808", "not a time", []byte{1})
	f.Fuzz(func(t *testing.T, id, stream, typ, version, position, at string, data []byte) {
		h := nats.Header{}
		for k, v := range map[string]string{"ce-id": id, "ce-subject": stream, "ce-type": typ,
			"ce-streamversion": version, "ce-position": position, "ce-time": at} {
			if v != "" {
				h.Set(k, v)
			}
		}
		e, err := parseHeaders(fuzzMsg{h: h, data: data})
		if err != nil {
			return
		}
		if e.ID == "" || e.StreamID == "" || e.Type == "" {
			t.Fatalf("accepted an event without its facts: %+v", e)
		}
		if e.Sequence != 7 || string(e.Raw) != string(data) {
			t.Fatalf("sequence or payload lost: %+v", e)
		}
	})
}
