package avro

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the child process's zone, on a machine without zone files

	havro "github.com/hamba/avro/v2"
	"github.com/stretchr/testify/require"
)

// The wall clocks around Berlin's daylight-saving changes of 2026: 02:00-03:00 on 29 March
// does not exist there, 02:00-03:00 on 25 October happens twice, and hamba/avro read a
// count of 01:30 on 25 October as 02:30.
var (
	springGap    = time.Date(2026, 3, 29, 2, 30, 0, 0, time.UTC)
	autumnTwice  = time.Date(2026, 10, 25, 2, 30, 0, 1000, time.UTC)
	autumnBefore = time.Date(2026, 10, 25, 1, 30, 0, 0, time.UTC)
	springBefore = time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC)
)

// wallClockSchema has a local timestamp in every place a value can be: a field of each
// unit, both kinds of union, an array, a map and a field the reader adds with a default.
func wallClockSchema(t *testing.T, withDefaulted bool) *Schema {
	t.Helper()
	fields := []string{
		`{"name":"at","type":{"type":"long","logicalType":"local-timestamp-millis"}}`,
		`{"name":"atMicros","type":{"type":"long","logicalType":"local-timestamp-micros"}}`,
		`{"name":"maybe","type":["null",{"type":"long","logicalType":"local-timestamp-millis"}],"default":null}`,
		`{"name":"either","type":["string",{"type":"long","logicalType":"local-timestamp-millis"}]}`,
		`{"name":"list","type":{"type":"array","items":{"type":"long","logicalType":"local-timestamp-millis"}}}`,
		`{"name":"byName","type":{"type":"map","values":{"type":"long","logicalType":"local-timestamp-micros"}}}`,
	}
	if withDefaulted {
		fields = append(fields, fmt.Sprintf(`{"name":"defaulted","type":{"type":"long","logicalType":"local-timestamp-millis"},"default":%d}`,
			springGap.UnixMilli()))
	}
	s, err := Parse(`{"type":"record","name":"Shift","namespace":"test.wall","fields":[` + strings.Join(fields, ",") + `]}`)
	require.NoError(t, err)
	require.NotNil(t, s.wall)
	return s
}

const wallClockJSON = `{"at":"2026-03-29T02:30:00","atMicros":"2026-10-25T02:30:00.000001",` +
	`"maybe":"2026-10-25T01:30:00","either":{"long":"2026-03-29T01:30:00"},` +
	`"list":["2026-03-29T02:30:00","2026-10-25T01:30:00"],"byName":{"a":"2026-10-25T02:30:00.000001"},` +
	`"defaulted":"2026-03-29T02:30:00"}`

// TestLocalTimestampsInADaylightSavingZone runs the other TestLocalTimestamps tests in a
// process whose zone has daylight-saving time; this process is usually in UTC, where
// hamba/avro's handling was right too.
func TestLocalTimestampsInADaylightSavingZone(t *testing.T) {
	t.Parallel()
	if os.Getenv("PGJET_TEST_ZONE") != "" {
		t.Skip("already the child")
	}
	for _, zone := range []string{"Europe/Berlin", "America/Santiago"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLocalTimestamps", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "TZ="+zone, "PGJET_TEST_ZONE="+zone)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "in %s:\n%s", zone, out)
		require.Contains(t, string(out), "--- PASS: TestLocalTimestampsKeepTheirWallClock", "in %s:\n%s", zone, out)
		require.Contains(t, string(out), "--- PASS: TestLocalTimestampsInNullableStructsAndSlices", "in %s:\n%s", zone, out)
	}
}

func TestLocalTimestampsKeepTheirWallClock(t *testing.T) {
	if zone := os.Getenv("PGJET_TEST_ZONE"); zone != "" {
		require.Equal(t, zone, time.Local.String(), "the zone did not load")
	}
	s := wallClockSchema(t, true)

	// What the bytes hold, read as plain longs: the wall clocks as if UTC.
	counts := func(t *testing.T, b []byte) map[string]any {
		t.Helper()
		var v map[string]any
		require.NoError(t, havro.Unmarshal(s.wall.plain, b, &v))
		return v
	}
	fromJSON, err := s.EncodeJSON([]byte(wallClockJSON))
	require.NoError(t, err)
	require.Equal(t, map[string]any{
		"at": springGap.UnixMilli(), "atMicros": autumnTwice.UnixMicro(),
		"maybe": autumnBefore.UnixMilli(), "either": springBefore.UnixMilli(),
		"list":   []any{springGap.UnixMilli(), autumnBefore.UnixMilli()},
		"byName": map[string]any{"a": autumnTwice.UnixMicro()}, "defaulted": springGap.UnixMilli(),
	}, counts(t, fromJSON))

	j, err := s.DecodeJSON(fromJSON)
	require.NoError(t, err)
	require.Equal(t, wallClockJSON, string(j))

	// Decoded: time.Time in UTC with the wall clock; a union keeps its wrapper.
	native, err := s.Decode(fromJSON)
	require.NoError(t, err)
	want := map[string]any{
		"at": springGap, "atMicros": autumnTwice,
		"maybe":  map[string]any{"long.local-timestamp-millis": autumnBefore},
		"either": map[string]any{"long.local-timestamp-millis": springBefore},
		"list":   []any{springGap, autumnBefore},
		"byName": map[string]any{"a": autumnTwice}, "defaulted": springGap,
	}
	require.Equal(t, want, native)

	// Encoded again, as an upcaster does with what it decoded: the same bytes.
	again, err := s.Encode(native)
	require.NoError(t, err)
	require.Equal(t, fromJSON, again)
	require.Equal(t, want, native, "Encode changed its argument")

	// A time.Time is written as its own wall clock, whatever its location.
	berlin, err := time.LoadLocation("Europe/Berlin")
	require.NoError(t, err)
	inBerlin := time.Date(2026, 10, 25, 2, 30, 0, 1000, berlin) // the first 02:30, CEST
	m := map[string]any{
		"at": springGap, "atMicros": inBerlin, "maybe": autumnBefore.In(time.FixedZone("X", 0)),
		"either": map[string]any{"long.local-timestamp-millis": springBefore},
		"list":   []time.Time{springGap, autumnBefore}, "byName": map[string]time.Time{"a": autumnTwice},
		"defaulted": springGap,
	}
	b, err := s.Encode(m)
	require.NoError(t, err)
	require.Equal(t, fromJSON, b)

	// So is a struct's, pointers and all.
	type shift struct {
		At        time.Time            `avro:"at"`
		AtMicros  time.Time            `avro:"atMicros"`
		Maybe     *time.Time           `avro:"maybe"`
		Either    any                  `avro:"either"`
		List      []time.Time          `avro:"list"`
		ByName    map[string]time.Time `avro:"byName"`
		Defaulted time.Time            `avro:"defaulted"`
	}
	maybe := autumnBefore
	b, err = s.Encode(&shift{At: springGap, AtMicros: inBerlin, Maybe: &maybe,
		Either: map[string]any{"long.local-timestamp-millis": springBefore},
		List:   []time.Time{springGap, autumnBefore}, ByName: map[string]time.Time{"a": autumnTwice}, Defaulted: springGap})
	require.NoError(t, err)
	require.Equal(t, fromJSON, b)
	b, err = s.Encode(shift{At: springGap, AtMicros: autumnTwice, Either: map[string]any{"string": "x"}, Defaulted: springGap})
	require.NoError(t, err)
	require.Equal(t, map[string]any{
		"at": springGap.UnixMilli(), "atMicros": autumnTwice.UnixMicro(), "maybe": nil,
		"either": "x", "list": []any{}, "byName": map[string]any{}, "defaulted": springGap.UnixMilli(),
	}, counts(t, b))

	// A reader that added a field reads its default as the same wall clock.
	old := wallClockSchema(t, false)
	written, err := old.Encode(m)
	require.NoError(t, err)
	read, err := ResolveDecode(old, s, written)
	require.NoError(t, err)
	require.Equal(t, want, read)
}

// A struct reaches local timestamps through nullable unions too: a pointer to a record's
// struct, a typed slice in an interface field. Each becomes a value of its branch.
func TestLocalTimestampsInNullableStructsAndSlices(t *testing.T) {
	t.Parallel()
	s, err := Parse(`{"type":"record","name":"Outer","namespace":"test.wall","fields":[
		{"name":"inner","type":["null",{"type":"record","name":"Inner","fields":[
			{"name":"at","type":{"type":"long","logicalType":"local-timestamp-millis"}}]}]},
		{"name":"times","type":["null",{"type":"array","items":{"type":"long","logicalType":"local-timestamp-micros"}}]}]}`)
	require.NoError(t, err)
	type inner struct {
		At time.Time `avro:"at"`
	}
	type outer struct {
		Inner *inner `avro:"inner"`
		Times any    `avro:"times"`
	}
	const text = `{"inner":{"at":"2026-03-29T02:30:00"},"times":["2026-10-25T01:30:00"]}`
	fromJSON, err := s.EncodeJSON([]byte(text))
	require.NoError(t, err)
	b, err := s.Encode(outer{Inner: &inner{At: springGap}, Times: []time.Time{autumnBefore}})
	require.NoError(t, err)
	require.Equal(t, fromJSON, b)
	j, err := s.DecodeJSON(b)
	require.NoError(t, err)
	require.Equal(t, text, string(j))

	b, err = s.Encode(outer{})
	require.NoError(t, err)
	j, err = s.DecodeJSON(b)
	require.NoError(t, err)
	require.Equal(t, `{"inner":null,"times":null}`, string(j))
}

// A union of a long and a local-timestamp long is a duplicate to the Avro specification, and
// without the logical type to hamba/avro: its long branch is still a long.
func TestLocalTimestampBesideALongInAUnion(t *testing.T) {
	t.Parallel()
	s, err := Parse(`{"type":"record","name":"R","fields":[{"name":"v","type":["long",{"type":"long","logicalType":"local-timestamp-millis"}]}]}`)
	if err != nil {
		t.Skipf("hamba/avro refuses the schema: %v", err)
	}
	require.NotNil(t, s.wall)
	b, err := s.Encode(map[string]any{"v": map[string]any{"long": int64(5)}})
	require.NoError(t, err)
	v, err := s.Decode(b)
	require.NoError(t, err)
	require.Equal(t, map[string]any{"v": map[string]any{"long": int64(5)}}, v)
}

// hamba/avro takes a pointer to a record's map too, at the top or in a nullable union:
// its local timestamps keep their wall clock, and the union value is its branch's.
func TestLocalTimestampsThroughAPointerToAMap(t *testing.T) {
	t.Parallel()
	s, err := Parse(`{"type":"record","name":"Outer","namespace":"test.wall","fields":[
		{"name":"at","type":{"type":"long","logicalType":"local-timestamp-millis"}},
		{"name":"inner","type":["null",{"type":"record","name":"Inner","fields":[
			{"name":"at","type":{"type":"long","logicalType":"local-timestamp-millis"}}]}]}]}`)
	require.NoError(t, err)
	const text = `{"at":"2026-03-29T02:30:00","inner":{"at":"2026-10-25T01:30:00"}}`
	fromJSON, err := s.EncodeJSON([]byte(text))
	require.NoError(t, err)
	inner := map[string]any{"at": autumnBefore}
	outer := map[string]any{"at": springGap, "inner": &inner}
	for _, v := range []any{outer, &outer} {
		b, err := s.Encode(v)
		require.NoError(t, err)
		require.Equal(t, fromJSON, b)
	}
}

// A struct whose field comes through a nil embedded pointer is refused, as hamba/avro refuses
// it for a schema without local timestamps, rather than written with the field's default.
func TestLocalTimestampsNilEmbeddedStruct(t *testing.T) {
	t.Parallel()
	type Base struct {
		N int64 `avro:"n"`
	}
	type event struct {
		*Base
		At time.Time `avro:"at"`
	}
	for _, typ := range []string{`"long"`, `{"type":"long","logicalType":"local-timestamp-millis"}`} {
		s, err := Parse(`{"type":"record","name":"R","fields":[{"name":"n","type":"long","default":7},{"name":"at","type":` + typ + `}]}`)
		require.NoError(t, err)
		_, err = s.Encode(event{At: springGap})
		require.ErrorContains(t, err, `embedded field "Base" is nil`, typ)
	}
}

// A union of a long and a local-timestamp long, or of both local-timestamp units, cannot
// lose its logical types (two plain longs): those branches are still written as wall clocks
// and decoded in UTC (hamba reads them through time.Local, so only their reading near a
// daylight-saving change is off), and the schema's other local timestamps are exact.
func TestLocalTimestampsInADuplicateUnion(t *testing.T) {
	t.Parallel()
	winter := time.Date(2026, 1, 10, 10, 0, 0, 0, time.UTC)
	for _, typ := range []string{
		`["long",{"type":"long","logicalType":"local-timestamp-millis"}]`,
		`["null",{"type":"long","logicalType":"local-timestamp-millis"},{"type":"long","logicalType":"local-timestamp-micros"}]`,
	} {
		s := fieldSchema(t, typ, `{"name":"at","type":{"type":"long","logicalType":"local-timestamp-millis"}}`)
		require.NotNil(t, s.wall, typ)
		const text = `{"v":{"long.local-timestamp-millis":"2026-01-10T10:00:00"},"at":"2026-03-29T02:30:00"}`
		b, err := s.EncodeJSON([]byte(text))
		require.NoError(t, err)
		want := appendLong(appendLong([]byte{0x02}, winter.UnixMilli()), springGap.UnixMilli()) // branch 1, then the counts
		require.Equal(t, want, b, typ)

		v, err := s.Decode(b)
		require.NoError(t, err)
		native := map[string]any{"v": map[string]any{"long.local-timestamp-millis": winter}, "at": springGap}
		require.Equal(t, native, v, typ)
		j, err := s.DecodeJSON(b)
		require.NoError(t, err)
		require.Equal(t, text, string(j), typ)
		again, err := s.Encode(v)
		require.NoError(t, err)
		require.Equal(t, want, again, typ)
		read, err := ResolveDecode(s, s, b)
		require.NoError(t, err)
		require.Equal(t, native, read, typ)
	}
}
