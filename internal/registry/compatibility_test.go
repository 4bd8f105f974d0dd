package registry

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/avro"
)

// ev returns the text of record t.Ev with the given field definitions.
func ev(fields ...string) string {
	return fmt.Sprintf(`{"type":"record","name":"Ev","namespace":"t","fields":[%s]}`, strings.Join(fields, ","))
}

// sample is an event in natural JSON written with one schema, and how the other schema
// must read it ("" for the same JSON).
type sample struct{ in, want string }

// compatCase is a schema change: what the checker must say about each direction, and data
// that must decode, through the consumers' decode path, wherever the checker says yes.
type compatCase struct {
	name              string
	old, new          string
	backward, forward bool     // new reads old's data; old reads new's data
	oldData, newData  []sample // written with old (read with new), written with new (read with old)
}

// Named types used in compatCases.
const (
	recA  = `{"type":"record","name":"A","fields":[{"name":"x","type":"int"}]}`
	enumE = `{"type":"enum","name":"E","symbols":["A","B"]}`
)

// decimal returns a bytes decimal type.
func decimal(precision, scale int) string {
	return fmt.Sprintf(`{"type":"bytes","logicalType":"decimal","precision":%d,"scale":%d}`, precision, scale)
}

// compatCases are schema changes whose verdicts Avro schema resolution and hamba/avro's
// decoder settle; each was once answered wrongly, or is a neighbour of one that was.
var compatCases = []compatCase{
	{
		name:     "added field with default",
		old:      ev(`{"name":"a","type":"int"}`),
		new:      ev(`{"name":"a","type":"int"}`, `{"name":"b","type":"int","default":7}`),
		backward: true, forward: true,
		oldData: []sample{{`{"a":1}`, `{"a":1,"b":7}`}},
		newData: []sample{{`{"a":1,"b":2}`, `{"a":1}`}},
	},
	{
		name:     "added field without default",
		old:      ev(`{"name":"a","type":"int"}`),
		new:      ev(`{"name":"a","type":"int"}`, `{"name":"b","type":"int"}`),
		backward: false, forward: true,
		newData: []sample{{`{"a":1,"b":2}`, `{"a":1}`}},
	},
	{
		name:     "int to long",
		old:      ev(`{"name":"a","type":"int"}`),
		new:      ev(`{"name":"a","type":"long"}`),
		backward: true, forward: false,
		oldData: []sample{{`{"a":-5}`, ""}},
	},
	{
		name:     "long to double",
		old:      ev(`{"name":"a","type":"long"}`),
		new:      ev(`{"name":"a","type":"double"}`),
		backward: true, forward: false,
		oldData: []sample{{`{"a":4503599627370496}`, ""}},
	},
	{
		name:     "float to double",
		old:      ev(`{"name":"a","type":"float"}`),
		new:      ev(`{"name":"a","type":"double"}`),
		backward: true, forward: false,
		oldData: []sample{{`{"a":1.5}`, ""}},
	},
	{
		name:     "string to bytes and back",
		old:      ev(`{"name":"a","type":"string"}`),
		new:      ev(`{"name":"a","type":"bytes"}`),
		backward: true, forward: true,
		oldData: []sample{{`{"a":"hi"}`, `{"a":"aGk="}`}},
		newData: []sample{{`{"a":"aGk="}`, `{"a":"hi"}`}},
	},
	{
		name:     "array and map items promoted",
		old:      ev(`{"name":"a","type":{"type":"array","items":"int"}}`, `{"name":"m","type":{"type":"map","values":"float"}}`),
		new:      ev(`{"name":"a","type":{"type":"array","items":"long"}}`, `{"name":"m","type":{"type":"map","values":"double"}}`),
		backward: true, forward: false,
		oldData: []sample{{`{"a":[1,2],"m":{"k":0.5}}`, ""}},
	},
	{
		name:     "enum symbol added",
		old:      ev(`{"name":"a","type":` + enumE + `}`),
		new:      ev(`{"name":"a","type":{"type":"enum","name":"E","symbols":["A","B","C"]}}`),
		backward: true, forward: false,
		oldData: []sample{{`{"a":"B"}`, ""}},
	},
	{
		name:     "enum symbol removed, the reader has a default",
		old:      ev(`{"name":"a","type":{"type":"enum","name":"E","symbols":["A","B","C"]}}`),
		new:      ev(`{"name":"a","type":{"type":"enum","name":"E","symbols":["A","B"],"default":"A"}}`),
		backward: true, forward: true,
		oldData: []sample{{`{"a":"C"}`, `{"a":"A"}`}, {`{"a":"B"}`, ""}},
		newData: []sample{{`{"a":"B"}`, ""}},
	},
	{
		name:     "fixed size changed",
		old:      ev(`{"name":"a","type":{"type":"fixed","name":"F","size":2}}`),
		new:      ev(`{"name":"a","type":{"type":"fixed","name":"F","size":3}}`),
		backward: false, forward: false,
	},
	{
		name:     "union branch added",
		old:      ev(`{"name":"a","type":["null","int"]}`),
		new:      ev(`{"name":"a","type":["null","int","string"]}`),
		backward: true, forward: false,
		oldData: []sample{{`{"a":1}`, `{"a":{"int":1}}`}, {`{"a":null}`, ""}},
	},
	{
		name:     "optional made required",
		old:      ev(`{"name":"a","type":["null","int"],"default":null}`),
		new:      ev(`{"name":"a","type":"int"}`),
		backward: false, forward: true,
		newData: []sample{{`{"a":1}`, ""}},
	},
	{
		// A named type referred to twice resolves once.
		name:     "record used twice, its field promoted",
		old:      ev(`{"name":"a","type":`+recA+`}`, `{"name":"b","type":"A"}`),
		new:      ev(`{"name":"a","type":{"type":"record","name":"A","fields":[{"name":"x","type":"long"}]}}`, `{"name":"b","type":"A"}`),
		backward: true, forward: false,
		oldData: []sample{{`{"a":{"x":1},"b":{"x":2}}`, ""}},
	},
	{
		name:     "nested record renamed, with an alias",
		old:      ev(`{"name":"a","type":["null",` + recA + `]}`),
		new:      ev(`{"name":"a","type":["null",{"type":"record","name":"B","aliases":["t.A"],"fields":[{"name":"x","type":"int"}]}]}`),
		backward: true, forward: false,
		oldData: []sample{{`{"a":{"x":1}}`, ""}},
	},
	{
		name:     "nested record renamed, without an alias",
		old:      ev(`{"name":"a","type":` + recA + `}`),
		new:      ev(`{"name":"a","type":{"type":"record","name":"B","fields":[{"name":"x","type":"int"}]}}`),
		backward: false, forward: false,
	},
	{
		name:     "field removed without default",
		old:      ev(`{"name":"a","type":"int"}`, `{"name":"b","type":"int"}`),
		new:      ev(`{"name":"a","type":"int"}`),
		backward: true, forward: false,
		oldData: []sample{{`{"a":1,"b":2}`, `{"a":1}`}},
	},
	{
		// hamba compares record names without their namespace; decoding does not.
		name:     "record moved to another namespace",
		old:      ev(`{"name":"a","type":"int"}`),
		new:      strings.Replace(ev(`{"name":"a","type":"int"}`), `"namespace":"t"`, `"namespace":"u"`, 1),
		backward: false, forward: false,
	},
	{
		name:     "record moved to another namespace, with an alias",
		old:      ev(`{"name":"a","type":"int"}`),
		new:      `{"type":"record","name":"Ev","namespace":"u","aliases":["t.Ev"],"fields":[{"name":"a","type":"int"}]}`,
		backward: true, forward: false,
		oldData: []sample{{`{"a":1}`, ""}},
	},
	{
		// Nested named types match by short name in resolution, as in Java's Avro.
		name:     "nested record moved to another namespace",
		old:      ev(`{"name":"a","type":{"type":"record","name":"A","namespace":"x","fields":[{"name":"x","type":"int"}]}}`),
		new:      ev(`{"name":"a","type":{"type":"record","name":"A","namespace":"y","fields":[{"name":"x","type":"int"}]}}`),
		backward: true, forward: true,
		oldData: []sample{{`{"a":{"x":1}}`, ""}},
		newData: []sample{{`{"a":{"x":1}}`, ""}},
	},
	{
		// y is renamed x while the old x goes: hamba's checker pairs the new x with the old
		// y (the alias) when y comes first, its resolver with the old x (the name).
		name:     "field renamed onto the name of a dropped field",
		old:      ev(`{"name":"y","type":"int"}`, `{"name":"x","type":"string"}`),
		new:      ev(`{"name":"x","type":"int","aliases":["y"]}`),
		backward: false, forward: false,
	},
	{
		// Resolution reads the record as the reader's branch; decoding must still give
		// the union's shape, {"t.A": record}, as for data written with new.
		name:     "record made optional",
		old:      ev(`{"name":"a","type":` + recA + `}`),
		new:      ev(`{"name":"a","type":["null",` + recA + `],"default":null}`),
		backward: true, forward: false,
		oldData: []sample{{`{"a":{"x":1}}`, ""}},
	},
	{
		name:     "record with a local timestamp made optional",
		old:      ev(`{"name":"a","type":{"type":"record","name":"L","fields":[{"name":"at","type":{"type":"long","logicalType":"local-timestamp-millis"}}]}}`),
		new:      ev(`{"name":"a","type":["null",{"type":"record","name":"L","fields":[{"name":"at","type":{"type":"long","logicalType":"local-timestamp-millis"}}]}],"default":null}`),
		backward: true, forward: false,
		oldData: []sample{{`{"a":{"at":"2024-01-02T03:04:05.678"}}`, ""}},
	},
	{
		name:     "enum made optional",
		old:      ev(`{"name":"a","type":` + enumE + `}`),
		new:      ev(`{"name":"a","type":["null",` + enumE + `],"default":null}`),
		backward: true, forward: false,
		oldData: []sample{{`{"a":"B"}`, ""}},
	},
	{
		name:     "array items made optional",
		old:      ev(`{"name":"a","type":{"type":"array","items":` + recA + `}}`),
		new:      ev(`{"name":"a","type":{"type":"array","items":["null",` + recA + `]}}`),
		backward: true, forward: false,
		oldData: []sample{{`{"a":[{"x":1},{"x":2}]}`, ""}},
	},
	{
		name:     "map values made a union",
		old:      ev(`{"name":"a","type":{"type":"map","values":"int"}}`),
		new:      ev(`{"name":"a","type":{"type":"map","values":["null","int",` + recA + `]}}`),
		backward: true, forward: false,
		oldData: []sample{{`{"a":{"k":1}}`, `{"a":{"k":{"int":1}}}`}},
	},
	{
		// hamba returns ["null","string"] values unwrapped, ["null","string","t.A"] ones
		// wrapped.
		name:     "record branch added to an optional string",
		old:      ev(`{"name":"a","type":["null","string"],"default":null}`),
		new:      ev(`{"name":"a","type":["null","string",` + recA + `],"default":null}`),
		backward: true, forward: false,
		oldData: []sample{{`{"a":"x"}`, `{"a":{"string":"x"}}`}, {`{"a":null}`, ""}},
	},
	{
		name:     "record branch gains a field",
		old:      ev(`{"name":"a","type":["string",` + recA + `]}`),
		new:      ev(`{"name":"a","type":["string",{"type":"record","name":"A","fields":[{"name":"x","type":"int"},{"name":"y","type":"int","default":2}]}]}`),
		backward: true, forward: true,
		oldData: []sample{{`{"a":{"t.A":{"x":1}}}`, `{"a":{"t.A":{"x":1,"y":2}}}`}, {`{"a":{"string":"s"}}`, ""}},
		newData: []sample{{`{"a":{"t.A":{"x":1,"y":5}}}`, `{"a":{"t.A":{"x":1}}}`}},
	},
	{
		// The Avro specification matches decimals only with equal precision and scale;
		// hamba ignores both, and 12.34 would read as 1.234.
		name:     "decimal scale changed",
		old:      ev(`{"name":"a","type":` + decimal(10, 2) + `}`),
		new:      ev(`{"name":"a","type":` + decimal(10, 3) + `}`),
		backward: false, forward: false,
	},
	{
		// Harmless in hamba, but a reader that follows the specification refuses it.
		name:     "decimal precision raised",
		old:      ev(`{"name":"a","type":` + decimal(10, 2) + `}`),
		new:      ev(`{"name":"a","type":` + decimal(12, 2) + `}`),
		backward: false, forward: false,
	},
	{
		name:     "decimal scale changed inside an optional array",
		old:      ev(`{"name":"a","type":["null",{"type":"array","items":` + decimal(10, 2) + `}],"default":null}`),
		new:      ev(`{"name":"a","type":["null",{"type":"array","items":` + decimal(10, 3) + `}],"default":null}`),
		backward: false, forward: false,
	},
	{
		name:     "fixed decimal scale changed",
		old:      ev(`{"name":"a","type":{"type":"fixed","name":"F","size":4,"logicalType":"decimal","precision":6,"scale":2}}`),
		new:      ev(`{"name":"a","type":{"type":"fixed","name":"F","size":4,"logicalType":"decimal","precision":6,"scale":1}}`),
		backward: false, forward: false,
	},
	{
		name:     "decimal unchanged, field renamed",
		old:      ev(`{"name":"a","type":` + decimal(10, 2) + `}`),
		new:      ev(`{"name":"b","aliases":["a"],"type":` + decimal(10, 2) + `}`),
		backward: true, forward: false,
		oldData: []sample{{`{"a":"12.34"}`, `{"b":"12.34"}`}},
	},
	{
		// 2024-01-02T03:04:05.678Z would read as 1970-01-20T17:22:44.645678Z.
		name:     "timestamp millis to micros",
		old:      ev(`{"name":"a","type":{"type":"long","logicalType":"timestamp-millis"}}`),
		new:      ev(`{"name":"a","type":{"type":"long","logicalType":"timestamp-micros"}}`),
		backward: false, forward: false,
	},
	{
		// int promotes to long: 2024-01-02 would read as 1970-01-01T00:00:19.724Z.
		name:     "date to timestamp-millis",
		old:      ev(`{"name":"a","type":{"type":"int","logicalType":"date"}}`),
		new:      ev(`{"name":"a","type":{"type":"long","logicalType":"timestamp-millis"}}`),
		backward: false, forward: false,
	},
	{
		name:     "time-millis to time-micros",
		old:      ev(`{"name":"a","type":{"type":"int","logicalType":"time-millis"}}`),
		new:      ev(`{"name":"a","type":{"type":"long","logicalType":"time-micros"}}`),
		backward: false, forward: false,
	},
	{
		// Adding or dropping a logical type is the author's reinterpretation.
		name:     "long annotated as timestamp-millis",
		old:      ev(`{"name":"a","type":"long"}`),
		new:      ev(`{"name":"a","type":{"type":"long","logicalType":"timestamp-millis"}}`),
		backward: true, forward: true,
		oldData: []sample{{`{"a":1000}`, `{"a":"1970-01-01T00:00:01Z"}`}},
		newData: []sample{{`{"a":"1970-01-01T00:00:01Z"}`, `{"a":1000}`}},
	},
	{
		name:     "string annotated as uuid",
		old:      ev(`{"name":"a","type":"string"}`),
		new:      ev(`{"name":"a","type":{"type":"string","logicalType":"uuid"}}`),
		backward: true, forward: true,
		oldData: []sample{{`{"a":"0b6f8a3e-3c6e-4d2b-9d43-2a3f6c1e9b10"}`, ""}},
		newData: []sample{{`{"a":"0b6f8a3e-3c6e-4d2b-9d43-2a3f6c1e9b10"}`, ""}},
	},
	{
		name:     "optional field added, null first",
		old:      ev(`{"name":"a","type":"int"}`),
		new:      ev(`{"name":"a","type":"int"}`, `{"name":"b","type":["null",`+enumE+`],"default":null}`),
		backward: true, forward: true,
		oldData: []sample{{`{"a":1}`, `{"a":1,"b":null}`}},
		newData: []sample{{`{"a":1,"b":"B"}`, `{"a":1}`}},
	},
	{
		name:     "string-first union field added",
		old:      ev(`{"name":"a","type":"int"}`),
		new:      ev(`{"name":"a","type":"int"}`, `{"name":"b","type":["string","null"],"default":"x"}`),
		backward: true, forward: true,
		oldData: []sample{{`{"a":1}`, `{"a":1,"b":"x"}`}},
	},
	{
		// Valid Avro, but hamba cannot decode the default: every old event would fail.
		name:     "enum-first union field added",
		old:      ev(`{"name":"a","type":"int"}`),
		new:      ev(`{"name":"a","type":"int"}`, `{"name":"b","type":[`+enumE+`,"null"],"default":"B"}`),
		backward: false, forward: true,
		newData: []sample{{`{"a":1,"b":{"t.E":"A"}}`, `{"a":1}`}},
	},
	{
		name:     "record-first union field added",
		old:      ev(`{"name":"a","type":"int"}`),
		new:      ev(`{"name":"a","type":"int"}`, `{"name":"b","type":[`+recA+`,"null"],"default":{"x":3}}`),
		backward: false, forward: true,
	},
	{
		name:     "timestamp-first union field added",
		old:      ev(`{"name":"a","type":"int"}`),
		new:      ev(`{"name":"a","type":"int"}`, `{"name":"b","type":[{"type":"long","logicalType":"timestamp-millis"},"null"],"default":0}`),
		backward: false, forward: true,
	},
	{
		name:     "array of optional records added, with a default item",
		old:      ev(`{"name":"a","type":"int"}`),
		new:      ev(`{"name":"a","type":"int"}`, `{"name":"b","type":{"type":"array","items":["null",`+recA+`]},"default":[null]}`),
		backward: false, forward: true,
	},
	{
		name:     "array of optional records added, empty by default",
		old:      ev(`{"name":"a","type":"int"}`),
		new:      ev(`{"name":"a","type":"int"}`, `{"name":"b","type":{"type":"array","items":["null",`+recA+`]},"default":[]}`),
		backward: true, forward: true,
		oldData: []sample{{`{"a":1}`, `{"a":1,"b":[]}`}},
	},
	{
		// hamba's checker reads b from a through the alias; its resolver reads a into a
		// and b from whatever bytes follow.
		name:     "field added without default, its alias naming a kept field",
		old:      ev(`{"name":"xs","type":{"type":"array","items":{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}}}`),
		new:      ev(`{"name":"xs","type":{"type":"array","items":{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"int","aliases":["a"]}]}}}`),
		backward: false, forward: true,
		newData: []sample{{`{"xs":[{"a":1,"b":2}]}`, `{"xs":[{"a":1}]}`}},
	},
	{
		// The resolved union would hold long twice.
		name:     "union of int and long to long",
		old:      ev(`{"name":"a","type":["int","long"]}`),
		new:      ev(`{"name":"a","type":"long"}`),
		backward: false, forward: true,
		newData: []sample{{`{"a":5}`, `{"a":{"long":5}}`}},
	},
}

// TestCompatibilityMatchesDecoding checks that the registry accepts a change in a
// direction exactly when the data decodes that way, and that the data then decodes to the
// right values through avro.ResolveDecode, which pgjet's consumers use.
func TestCompatibilityMatchesDecoding(t *testing.T) {
	t.Parallel()
	for _, tc := range compatCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			old, err := avro.Parse(tc.old)
			require.NoError(t, err)
			cur, err := avro.Parse(tc.new)
			require.NoError(t, err)
			registered := []Version{{Version: 1, Schema: old}}

			backward := Backward.check(cur, registered)
			require.Equal(t, tc.backward, len(backward) == 0, "backward: %v", backward)
			forward := Forward.check(cur, registered)
			require.Equal(t, tc.forward, len(forward) == 0, "forward: %v", forward)
			full := Full.check(cur, registered)
			require.Len(t, full, len(backward)+len(forward))

			if tc.backward {
				requireDecodes(t, old, cur, tc.oldData)
			}
			if tc.forward {
				requireDecodes(t, cur, old, tc.newData)
			}
		})
	}
}

// requireDecodes writes each sample with writer and reads it with reader as pgjet's
// consumers do, then re-encodes the result with reader, as the upcasting path does.
func requireDecodes(t *testing.T, writer, reader *avro.Schema, samples []sample) {
	t.Helper()
	for _, s := range samples {
		payload, err := writer.EncodeJSON([]byte(s.in))
		require.NoError(t, err, "encoding %s", s.in)
		native, err := avro.ResolveDecode(writer, reader, payload)
		require.NoError(t, err, "decoding %s", s.in)
		got, err := reader.RenderJSON(native)
		require.NoError(t, err, "rendering %s read from %s: %#v", reader.FullName(), s.in, native)
		want := s.want
		if want == "" {
			want = s.in
		}
		require.JSONEq(t, want, string(got), "%s read from %s", reader.FullName(), s.in)
		_, err = reader.EncodeWithoutRules(native)
		require.NoError(t, err, "re-encoding %s read from %s", reader.FullName(), s.in)
	}
}

// A refusal names the field and both types.
func TestCompatibilityLogicalTypeReason(t *testing.T) {
	t.Parallel()
	old, err := avro.Parse(ev(`{"name":"m","type":{"type":"map","values":` + decimal(10, 2) + `}}`))
	require.NoError(t, err)
	cur, err := avro.Parse(ev(`{"name":"m","type":{"type":"map","values":` + decimal(10, 3) + `}}`))
	require.NoError(t, err)
	breaks := Backward.check(cur, []Version{{Version: 1, Schema: old}})
	require.Len(t, breaks, 1)
	require.Equal(t, "field m{}: a value written as bytes (decimal(10,2)) would be read as bytes (decimal(10,3)), which means another value",
		breaks[0].Reason)
}
