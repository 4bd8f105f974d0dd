package pgjet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/avro"
	"github.com/pgjet/pgjet/internal/evolve"
	"github.com/pgjet/pgjet/internal/pgtest"
	"github.com/pgjet/pgjet/internal/registry"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
)

// Versions of test.Parcel, BACKWARD_TRANSITIVE (aliases stay, so the newest version still
// reads version 1): v2 adds a field with a default (resolution), v3 splits a field
// (upcaster, declared with "upcast": true), v4 renames a field (alias: resolution), v5
// changes a meaning without a schema signal that resolution could see (an upcaster that
// is registered, and so applied, though not required).
var parcelVersions = []string{
	`{"type":"record","name":"Parcel","namespace":"test","fields":[
		{"name":"carrier","type":"string"},{"name":"grams","type":"int"}]}`,
	`{"type":"record","name":"Parcel","namespace":"test","fields":[
		{"name":"carrier","type":"string"},{"name":"grams","type":"int"},
		{"name":"fragile","type":"boolean","default":false}]}`,
	`{"type":"record","name":"Parcel","namespace":"test","upcast":true,"fields":[
		{"name":"carrier_name","type":"string","aliases":["carrier"]},{"name":"carrier_code","type":"string","default":""},
		{"name":"grams","type":"int"},{"name":"fragile","type":"boolean","default":false}]}`,
	`{"type":"record","name":"Parcel","namespace":"test","fields":[
		{"name":"carrier_name","type":"string","aliases":["carrier"]},{"name":"carrier_code","type":"string","default":""},
		{"name":"weight","type":"long","aliases":["grams"]},{"name":"fragile","type":"boolean","default":false}]}`,
	`{"type":"record","name":"Parcel","namespace":"test","fields":[
		{"name":"carrier_name","type":"string","aliases":["carrier"]},{"name":"carrier_code","type":"string","default":""},
		{"name":"weight","type":"long","aliases":["grams"],"doc":"kilograms"},{"name":"fragile","type":"boolean","default":false}]}`,
}

const (
	parcel  = "test.Parcel"
	shipped = "pgjet.demo.order.OrderShipped"
)

func splitCarrier(d map[string]any) (map[string]any, error) {
	d["carrier_name"] = d["carrier"]
	d["carrier_code"] = strings.ToUpper(d["carrier"].(string))
	delete(d, "carrier")
	return d, nil
}

func gramsToKilos(d map[string]any) (map[string]any, error) {
	d["weight"] = d["weight"].(int64) / 1000
	return d, nil
}

// parcelEvents registers versions 1..n of test.Parcel and returns an event of each,
// encoded with its version.
func parcelEvents(t *testing.T, reg *registry.Registry, n int) []pgjet.RecordedEvent {
	t.Helper()
	ctx := context.Background()
	data := []string{
		`{"carrier":"dhl","grams":2500}`,
		`{"carrier":"ups","grams":1500,"fragile":true}`,
		`{"carrier_name":"gls","carrier_code":"GLS","grams":500}`,
		`{"carrier_name":"dpd","carrier_code":"DPD","weight":7000}`,
		`{"carrier_name":"tnt","carrier_code":"TNT","weight":3}`,
	}
	var out []pgjet.RecordedEvent
	for i := range n {
		v, err := reg.Register(ctx, parcel, parcelVersions[i])
		require.NoError(t, err)
		require.Equal(t, i+1, v.Version)
		body, err := v.Schema.EncodeJSON([]byte(data[i]))
		require.NoError(t, err)
		out = append(out, pgjet.RecordedEvent{Type: parcel, Data: avro.AppendWire(nil, uint32(v.ID), body)})
	}
	return out
}

func decodeAll(t *testing.T, s *pgjet.Store, evs []pgjet.RecordedEvent) []string {
	t.Helper()
	var out []string
	for _, ev := range evs {
		js, err := s.DecodeJSON(context.Background(), ev)
		require.NoError(t, err)
		out = append(out, string(js))
	}
	return out
}

func TestUpcastChain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := newStore(t)
	s, err := pgjet.New(pgjet.Config{Pool: pool, Upcasters: []pgjet.Upcaster{{Type: parcel, FromVersion: 2, Func: splitCarrier}}})
	require.NoError(t, err)
	require.NoError(t, s.Registry().SetCompatibility(ctx, parcel, registry.BackwardTransitive))
	evs := parcelEvents(t, s.Registry(), 3)

	// Versions 1 and 2 go through resolution to 2, then the upcaster to 3.
	require.Equal(t, []string{
		`{"carrier_name":"dhl","carrier_code":"DHL","grams":2500,"fragile":false}`,
		`{"carrier_name":"ups","carrier_code":"UPS","grams":1500,"fragile":true}`,
		`{"carrier_name":"gls","carrier_code":"GLS","grams":500,"fragile":false}`,
	}, decodeAll(t, s, evs))

	// A rename by alias in version 4 is resolution only; then version 5 changes the unit,
	// which only an upcaster knows: registering it makes every older event pass it.
	evs = append(evs, parcelEvents(t, s.Registry(), 5)[3:]...)
	require.NoError(t, s.Upcast(parcel, 4, gramsToKilos))
	require.Equal(t, []string{
		`{"carrier_name":"dhl","carrier_code":"DHL","weight":2,"fragile":false}`,
		`{"carrier_name":"ups","carrier_code":"UPS","weight":1,"fragile":true}`,
		`{"carrier_name":"gls","carrier_code":"GLS","weight":0,"fragile":false}`,
		`{"carrier_name":"dpd","carrier_code":"DPD","weight":7,"fragile":false}`,
		`{"carrier_name":"tnt","carrier_code":"TNT","weight":3,"fragile":false}`,
	}, decodeAll(t, s, evs))

	native, err := s.Decode(ctx, evs[0])
	require.NoError(t, err)
	require.Equal(t, map[string]any{"carrier_name": "dhl", "carrier_code": "DHL", "weight": int64(2), "fragile": false}, native)

	// The same decoding without a Store, as the projector does it.
	d, err := evolve.New(s.Registry(), pgjet.Upcaster{Type: parcel, FromVersion: 2, Func: splitCarrier},
		pgjet.Upcaster{Type: parcel, FromVersion: 4, Func: gramsToKilos})
	require.NoError(t, err)
	got, err := d.Decode(ctx, parcel, evs[1].Data)
	require.NoError(t, err)
	require.Equal(t, int64(1), got["weight"])

	require.ErrorContains(t, s.Upcast(parcel, 2, splitCarrier), "two upcasters")
	require.Error(t, s.Upcast(parcel, 0, splitCarrier))
}

func TestUpcastMissingStep(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	evs := parcelEvents(t, s.Registry(), 3)
	for _, ev := range evs[:2] {
		_, err := s.Decode(ctx, ev)
		require.ErrorIs(t, err, pgjet.ErrMissingUpcaster)
		require.ErrorContains(t, err, "test.Parcel data of version 2 needs an upcaster to version 3")
	}
	// Data of the newest version needs no step.
	_, err := s.Decode(ctx, evs[2])
	require.NoError(t, err)

	// Schemas registered under NONE that resolution cannot bridge need an upcaster too.
	require.NoError(t, s.Registry().SetCompatibility(ctx, "test.Box", registry.None))
	v1, err := s.Registry().Register(ctx, "test.Box", `{"type":"record","name":"Box","namespace":"test","fields":[{"name":"size","type":"string"}]}`)
	require.NoError(t, err)
	_, err = s.Registry().Register(ctx, "test.Box", `{"type":"record","name":"Box","namespace":"test","fields":[{"name":"size","type":"int"}]}`)
	require.NoError(t, err)
	body, err := v1.Schema.EncodeJSON([]byte(`{"size":"XL"}`))
	require.NoError(t, err)
	ev := pgjet.RecordedEvent{Type: "test.Box", Data: avro.AppendWire(nil, uint32(v1.ID), body)}
	_, err = s.Decode(ctx, ev)
	require.ErrorIs(t, err, pgjet.ErrMissingUpcaster)
	require.NoError(t, s.Upcast("test.Box", 1, func(d map[string]any) (map[string]any, error) {
		return map[string]any{"size": map[string]int{"S": 1, "XL": 4}[d["size"].(string)]}, nil
	}))
	js, err := s.DecodeJSON(ctx, ev)
	require.NoError(t, err)
	require.JSONEq(t, `{"size":4}`, string(js))
}

// TestUpcastNeededWhereResolutionWouldMisread: a pair hamba/avro's resolution accepts but
// reads wrongly (a decimal's scale changed: 12.34 written with scale 2 would read as 1.234
// with scale 3) is not decoded by resolution, whether it was registered under NONE or
// before the registry's compatibility check caught it: it needs an upcaster.
func TestUpcastNeededWhereResolutionWouldMisread(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	const typ = "test.Price"
	price := func(scale string) string {
		return `{"type":"record","name":"Price","namespace":"test","fields":[{"name":"amount",
			"type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":` + scale + `}}]}`
	}
	require.NoError(t, s.Registry().SetCompatibility(ctx, typ, registry.None))
	v1, err := s.Registry().Register(ctx, typ, price("2"))
	require.NoError(t, err)
	_, err = s.Registry().Register(ctx, typ, price("3"))
	require.NoError(t, err)
	body, err := v1.Schema.EncodeJSON([]byte(`{"amount":"12.34"}`))
	require.NoError(t, err)
	ev := pgjet.RecordedEvent{Type: typ, Data: avro.AppendWire(nil, uint32(v1.ID), body)}
	_, err = s.Decode(ctx, ev)
	require.ErrorIs(t, err, pgjet.ErrMissingUpcaster)
	require.NoError(t, s.Upcast(typ, 1, func(d map[string]any) (map[string]any, error) { return d, nil }))
	js, err := s.DecodeJSON(ctx, ev)
	require.NoError(t, err)
	require.JSONEq(t, `{"amount":"12.340"}`, string(js))
}

func TestUpcastFailures(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	evs := parcelEvents(t, s.Registry(), 3)
	calls := 0
	require.NoError(t, s.Upcast(parcel, 2, func(d map[string]any) (map[string]any, error) {
		calls++
		if d["carrier"] == "dhl" {
			return nil, errors.New("no such carrier")
		}
		return d, nil // forgets carrier_name
	}))
	_, err := s.Decode(ctx, evs[0])
	require.ErrorIs(t, err, pgjet.ErrUpcast)
	require.ErrorContains(t, err, "no such carrier")
	_, err = s.Decode(ctx, evs[1])
	require.ErrorIs(t, err, pgjet.ErrUpcast)
	require.ErrorContains(t, err, "does not fit version 3")
	require.Equal(t, 2, calls)

	// A payload whose schema id is not a version of the type.
	placedV, err := s.Registry().Latest(ctx, placed)
	require.NoError(t, err)
	_, err = s.Decode(ctx, pgjet.RecordedEvent{Type: parcel, Data: avro.AppendWire(nil, uint32(placedV.ID), nil)})
	require.ErrorContains(t, err, "is not a version of test.Parcel")
	_, err = s.Decode(ctx, pgjet.RecordedEvent{Type: parcel, Data: []byte{1, 2}})
	require.Error(t, err)
}

// TestReadOldEventsInNewestShape appends an OrderShipped while version 1 is the newest,
// registers versions 2 and 3, and reads the stored event in version 3's shape.
func TestReadOldEventsInNewestShape(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	require.NoError(t, pgjet.Migrate(ctx, pool))
	s, err := pgjet.New(pgjet.Config{Pool: pool, SchemaTTL: time.Nanosecond, Upcasters: demoschemas.Upcasters()})
	require.NoError(t, err)
	texts := map[string]string{}
	for _, f := range []string{"history/order_shipped.v1.avsc", "history/order_shipped.v2.avsc", "order_shipped.avsc"} {
		b, err := demoschemas.Files.ReadFile(f)
		require.NoError(t, err)
		texts[f] = string(b)
	}
	// Version 3 must read every earlier version's data: the level an event log needs.
	require.NoError(t, s.Registry().SetCompatibility(ctx, shipped, registry.BackwardTransitive))
	_, err = s.Registry().Register(ctx, shipped, texts["history/order_shipped.v1.avsc"])
	require.NoError(t, err)
	_, err = s.Append(ctx, "order-7", pgjet.Any, pgjet.EventData{Type: shipped, Data: json.RawMessage(
		`{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10","carrier":"UPS","tracking_number":"1Z","shipped_at":"2026-11-26T10:00:00Z"}`)})
	require.NoError(t, err)
	for _, f := range []string{"history/order_shipped.v2.avsc", "order_shipped.avsc"} {
		_, err = s.Registry().Register(ctx, shipped, texts[f])
		require.NoError(t, err)
	}
	evs, err := s.ReadStream(ctx, "order-7", pgjet.Forward, 1, 10)
	require.NoError(t, err)
	js, err := s.DecodeJSON(ctx, evs[0])
	require.NoError(t, err)
	require.JSONEq(t, `{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10","carrier_name":"UPS","carrier_code":"UPS",
		"tracking_number":"1Z","service_level":"STANDARD","shipped_at":"2026-11-26T10:00:00Z"}`, string(js))
	raw, err := s.DecodeJSONAsWritten(ctx, evs[0])
	require.NoError(t, err)
	require.JSONEq(t, `{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10","carrier":"UPS","tracking_number":"1Z","shipped_at":"2026-11-26T10:00:00Z"}`, string(raw))
}

// BenchmarkDecodeUpcast measures decoding an OrderShipped written with version 1 into the
// newest shape: resolution to version 2, the upcaster, re-encoding, resolution to 3.
func BenchmarkDecodeUpcast(b *testing.B) {
	ctx := context.Background()
	pool := pgtest.Pool(b)
	require.NoError(b, pgjet.Migrate(ctx, pool))
	s, err := pgjet.New(pgjet.Config{Pool: pool, Upcasters: demoschemas.Upcasters()})
	require.NoError(b, err)
	vs, err := s.Registry().RegisterFS(ctx, demoschemas.Files)
	require.NoError(b, err)
	v1 := vs[0] // history/order_shipped.v1.avsc sorts first
	require.Equal(b, shipped, v1.Subject)
	body, err := v1.Schema.EncodeJSON([]byte(`{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10","carrier":"PostNL",
		"tracking_number":"TRK0000000001","shipped_at":"2025-01-02T10:00:00Z"}`))
	require.NoError(b, err)
	ev := pgjet.RecordedEvent{Type: shipped, Data: avro.AppendWire(nil, uint32(v1.ID), body)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Decode(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
}

// Under BACKWARD (the registry's default) each version is only checked against the one
// before it, so data of version 1 may not resolve to version 3 directly although every
// step resolves: a field removed in v2 and added back with another type in v3, an alias
// that v2 added and v3 dropped. Such data must still decode, through version 2, and not
// need an upcaster.
func TestDecodeStepsThroughVersionsUnderBackward(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	for _, c := range []struct {
		name     string
		versions []string
		v1, want string
	}{{
		"test.Label",
		[]string{
			`{"type":"record","name":"Label","namespace":"test","fields":[{"name":"name","type":"string"},{"name":"size","type":"string"}]}`,
			`{"type":"record","name":"Label","namespace":"test","fields":[{"name":"name","type":"string"}]}`,
			`{"type":"record","name":"Label","namespace":"test","fields":[{"name":"name","type":"string"},{"name":"size","type":"int","default":0}]}`,
		},
		`{"name":"a","size":"XL"}`, `{"name":"a","size":0}`,
	}, {
		"test.Crate",
		[]string{
			`{"type":"record","name":"Crate","namespace":"test","fields":[{"name":"carrier","type":"string"}]}`,
			`{"type":"record","name":"Crate","namespace":"test","fields":[{"name":"carrier_name","type":"string","aliases":["carrier"]}]}`,
			`{"type":"record","name":"Crate","namespace":"test","fields":[{"name":"carrier_name","type":"string"},{"name":"weight","type":"long","default":1}]}`,
		},
		`{"carrier":"dhl"}`, `{"carrier_name":"dhl","weight":1}`,
	}} {
		t.Run(c.name, func(t *testing.T) {
			require.NoError(t, s.Registry().SetCompatibility(ctx, c.name, registry.Backward))
			var v1 registry.Version
			for i, text := range c.versions {
				v, err := s.Registry().Register(ctx, c.name, text)
				require.NoError(t, err)
				if i == 0 {
					v1 = v
				}
			}
			body, err := v1.Schema.EncodeJSON([]byte(c.v1))
			require.NoError(t, err)
			ev := pgjet.RecordedEvent{Type: c.name, Data: avro.AppendWire(nil, uint32(v1.ID), body)}
			for range 2 { // the second time from the decoder's caches
				js, err := s.DecodeJSON(ctx, ev)
				require.NoError(t, err)
				require.JSONEq(t, c.want, string(js))
			}
		})
	}
}

// Every decoding error names the event, whichever step failed: a reader of a long stream
// must be able to find the one event it cannot read.
func TestDecodeErrorsNameTheEvent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	good := parcelEvents(t, s.Registry(), 1)[0]
	id := uuid.New()
	for name, data := range map[string][]byte{
		"truncated body": good.Data[:len(good.Data)-1],
		"unknown id":     avro.AppendWire(nil, 1<<30, nil),
		"no wire header": {1, 2},
		"trailing bytes": append(bytes.Clone(good.Data), 0),
	} {
		ev := pgjet.RecordedEvent{ID: id, Type: parcel, Data: data}
		_, err := s.Decode(ctx, ev)
		require.ErrorContains(t, err, id.String(), "Decode, %s", name)
		_, err = s.DecodeJSON(ctx, ev)
		require.ErrorContains(t, err, id.String(), "DecodeJSON, %s", name)
		_, err = s.DecodeJSONAsWritten(ctx, ev)
		require.ErrorContains(t, err, id.String(), "DecodeJSONAsWritten, %s", name)
	}
}

// A uuid logical type added to a string field is a compatible change, so events written
// before it may hold any string there. Upcast to the version that added it, they keep that
// string: the uuid format is a rule for new data, and upcasting re-encodes without rules.
func TestUpcastKeepsAStringWrittenBeforeItsFieldBecameAUUID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	v1, err := s.Registry().Register(ctx, "test.Ticket", `{"type":"record","name":"Ticket","namespace":"test","fields":[
		{"name":"ref","type":"string"},{"name":"n","type":"int"}]}`)
	require.NoError(t, err)
	_, err = s.Registry().Register(ctx, "test.Ticket", `{"type":"record","name":"Ticket","namespace":"test","upcast":true,"fields":[
		{"name":"ref","type":{"type":"string","logicalType":"uuid"}},{"name":"n","type":"int"}]}`)
	require.NoError(t, err)
	require.NoError(t, s.Upcast("test.Ticket", 1, func(d map[string]any) (map[string]any, error) {
		d["n"] = d["n"].(int) * 10
		return d, nil
	}))
	body, err := v1.Schema.EncodeJSON([]byte(`{"ref":"T-1","n":1}`))
	require.NoError(t, err)
	js, err := s.DecodeJSON(ctx, pgjet.RecordedEvent{Type: "test.Ticket", Data: avro.AppendWire(nil, uint32(v1.ID), body)})
	require.NoError(t, err)
	require.JSONEq(t, `{"ref":"T-1","n":10}`, string(js))
}
