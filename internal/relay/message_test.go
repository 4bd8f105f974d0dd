package relay_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/relay"
	"github.com/pgjet/pgjet/internal/subject"
)

// BenchmarkMessage builds one event's NATS message, as the relay does for every event.
func BenchmarkMessage(b *testing.B) {
	scheme, err := subject.New("pgjet.events")
	if err != nil {
		b.Fatal(err)
	}
	o := relay.MessageOptions{Subjects: scheme, Source: "pgjet/relay", RegistryURL: "http://writer:8080"}
	e := relay.Event{
		Position: 123456, ID: "01a21f60-9bd8-7364-8764-d24e2d663a51", Stream: "order-5f0c7d4e", Version: 7,
		Type: "pgjet.demo.order.OrderCancelled", SchemaID: 12, Data: make([]byte, 300),
		CreatedAt:   time.Date(2026, 11, 27, 23, 59, 1, 123456000, time.UTC),
		Traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	}
	b.ReportAllocs()
	for b.Loop() {
		relay.Message(e, o)
	}
}

// Message sets exactly the contract's headers, each once, and the traceparent only for an
// event that has one.
func TestMessageHeaders(t *testing.T) {
	scheme, err := subject.New("pgjet.events")
	if err != nil {
		t.Fatal(err)
	}
	o := relay.MessageOptions{Subjects: scheme, Source: "pgjet", RegistryURL: "http://registry:8080"}
	e := relay.Event{
		Position: 99, ID: "id-1", Stream: "order-7", Version: 3, Type: "pgjet.demo.order.OrderCancelled",
		SchemaID: 12, Data: []byte{0, 0, 0, 0, 12}, CreatedAt: time.Date(2026, 11, 27, 23, 59, 1, 5, time.FixedZone("x", 3600)),
	}
	want := map[string]string{
		"Nats-Msg-Id": "id-1", "ce-specversion": "1.0", "ce-id": "id-1", "ce-source": "pgjet",
		"ce-type": "pgjet.demo.order.OrderCancelled", "ce-subject": "order-7",
		"ce-time": "2026-11-27T22:59:01.000000005Z", "ce-datacontenttype": "application/avro",
		"ce-dataschema": "http://registry:8080/schemas/ids/12", relay.HeaderSchemaID: "12",
		relay.HeaderStreamVersion: "3", relay.HeaderPosition: "99",
	}
	check := func(m *nats.Msg) {
		t.Helper()
		require.Equal(t, "pgjet.events.order.pgjet:demo:order:OrderCancelled.order-7", m.Subject)
		require.Len(t, m.Header, len(want))
		for k, v := range want {
			require.Equal(t, []string{v}, m.Header.Values(k), k)
		}
	}
	check(relay.Message(e, o))

	e.Traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	want[relay.HeaderTraceparent] = e.Traceparent
	m := relay.Message(e, o)
	check(m)
	// Each value is its own: adding to one header leaves the others as they were.
	m.Header.Add("ce-id", "another")
	for k, v := range want {
		if k != "ce-id" {
			require.Equal(t, []string{v}, m.Header.Values(k), k)
		}
	}
}
