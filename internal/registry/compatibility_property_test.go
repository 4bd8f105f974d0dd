package registry

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	havro "github.com/hamba/avro/v2"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/avro"
)

// FuzzCompatibility generates a random event schema and a random change to it, and checks
// the registry's verdict against the data: in each direction the checker accepts, random
// events written with one schema must decode with the other through avro.ResolveDecode
// (the consumers' path), render and re-encode with it, and mean the same: every value the
// reader reads from a writer field equals the written one, up to Avro's promotions. The
// seed corpus runs with go test; go test -fuzz FuzzCompatibility explores further.
func FuzzCompatibility(f *testing.F) {
	for seed := range uint64(400) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, seed uint64) {
		g := &schemaGen{rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
		oldJSON := g.record("Ev", 0)
		newJSON := g.change(deepCopy(oldJSON).(map[string]any))
		oldText, newText := toJSON(t, oldJSON), toJSON(t, newJSON)
		old, err := avro.Parse(oldText)
		require.NoError(t, err, oldText)
		cur, err := avro.Parse(newText)
		if err != nil || avro.CheckDefaults(newText) != nil {
			return // the change made an invalid schema, which the registry refuses anyway
		}
		registered := []Version{{Version: 1, Schema: old}}
		if len(Backward.check(cur, registered)) == 0 {
			checkData(t, g, oldJSON, old, cur, oldText, newText)
		}
		if len(Forward.check(cur, registered)) == 0 {
			checkData(t, g, newJSON, cur, old, newText, oldText)
		}
	})
}

// checkData writes random events with writer, reads them with reader, and fails unless
// they decode, render, re-encode and mean what they meant.
func checkData(t *testing.T, g *schemaGen, writerJSON map[string]any, writer, reader *avro.Schema, writerText, readerText string) {
	t.Helper()
	for range 5 {
		in := toJSON(t, g.value(writerJSON))
		payload, err := writer.EncodeJSON([]byte(in))
		require.NoError(t, err, "encoding %s with %s", in, writerText)
		written, err := writer.Decode(payload)
		require.NoError(t, err)
		read, err := avro.ResolveDecode(writer, reader, payload)
		require.NoError(t, err, "accepted, but %s written with\n%s\ndoes not decode with\n%s", in, writerText, readerText)
		_, err = reader.RenderJSON(read)
		require.NoError(t, err, "accepted, but %s written with\n%s\ndecodes with\n%s\ninto %#v", in, writerText, readerText, read)
		_, err = reader.EncodeWithoutRules(read)
		require.NoError(t, err, "accepted, but %s written with\n%s\nre-encodes not with\n%s", in, writerText, readerText)
		require.NoError(t, sameMeaning(writer.Avro(), reader.Avro(), written, read, ""),
			"accepted, but %s written with\n%s\nmeans something else read with\n%s", in, writerText, readerText)
	}
}

// sameMeaning fails where rv, read with reader from data written with writer, is not wv,
// the value written: Avro schema resolution's rules, applied to decoded values.
func sameMeaning(writer, reader havro.Schema, wv, rv any, path string) error {
	writer, reader = derefSchema(writer), derefSchema(reader)
	if wu, ok := writer.(*havro.UnionSchema); ok {
		b, inner := branchOf(wu, wv)
		if b == nil {
			return fmt.Errorf("%s: %#v is no branch of the writer's union", path, wv)
		}
		return sameMeaning(b, reader, inner, rv, path)
	}
	if ru, ok := reader.(*havro.UnionSchema); ok {
		b, inner := branchOf(ru, rv)
		if b == nil {
			return fmt.Errorf("%s: %#v is no branch of the reader's union", path, rv)
		}
		return sameMeaning(writer, b, wv, inner, path)
	}
	switch r := reader.(type) {
	case *havro.RecordSchema:
		w := writer.(*havro.RecordSchema)
		wm, rm := wv.(map[string]any), rv.(map[string]any)
		for _, rf := range r.Fields() {
			for _, wf := range w.Fields() {
				if wf.Name() == rf.Name() || slices.Contains(rf.Aliases(), wf.Name()) {
					if err := sameMeaning(wf.Type(), rf.Type(), wm[wf.Name()], rm[rf.Name()], path+"."+rf.Name()); err != nil {
						return err
					}
					break
				}
			}
		}
		return nil
	case *havro.EnumSchema:
		want := wv
		if !slices.Contains(r.Symbols(), wv.(string)) {
			want = r.Default()
		}
		if rv != want {
			return fmt.Errorf("%s: symbol %v read as %v", path, wv, rv)
		}
		return nil
	case *havro.ArraySchema:
		wa, ra := wv.([]any), rv.([]any)
		if len(wa) != len(ra) {
			return fmt.Errorf("%s: %d items read as %d", path, len(wa), len(ra))
		}
		for i := range wa {
			if err := sameMeaning(writer.(*havro.ArraySchema).Items(), r.Items(), wa[i], ra[i], fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		return nil
	case *havro.MapSchema:
		wm, rm := wv.(map[string]any), rv.(map[string]any)
		if len(wm) != len(rm) {
			return fmt.Errorf("%s: %d entries read as %d", path, len(wm), len(rm))
		}
		for k := range wm {
			if err := sameMeaning(writer.(*havro.MapSchema).Values(), r.Values(), wm[k], rm[k], path+"["+k+"]"); err != nil {
				return err
			}
		}
		return nil
	}
	wl, rl := logicalOf(writer), logicalOf(reader)
	if (wl == "") != (rl == "") {
		return nil // a logical type added or dropped: the schema author's reinterpretation
	}
	if !sameScalar(wv, rv) {
		return fmt.Errorf("%s: %#v (%s) read as %#v (%s)", path, wv, describeSchema(writer), rv, describeSchema(reader))
	}
	return nil
}

// sameScalar compares primitive and logical values across promotions.
func sameScalar(a, b any) bool {
	if fa, ok := number(a); ok {
		fb, ok := number(b)
		return ok && (fa == fb || math.Abs(fa-fb) <= 1e-6*math.Max(math.Abs(fa), math.Abs(fb)))
	}
	switch x := a.(type) {
	case string:
		return x == bytesOrString(b)
	case []byte:
		return string(x) == bytesOrString(b)
	case time.Time:
		y, ok := b.(time.Time)
		return ok && x.Equal(y)
	case *big.Rat:
		y, ok := b.(*big.Rat)
		return ok && x.Cmp(y) == 0
	}
	return reflect.DeepEqual(a, b)
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case float32:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

func bytesOrString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	}
	return fmt.Sprintf("\x00%#v", v) // equal to no string
}

// branchOf returns the branch of u that native value v holds, and the branch's value.
func branchOf(u *havro.UnionSchema, v any) (havro.Schema, any) {
	if v == nil {
		for _, b := range u.Types() {
			if b.Type() == havro.Null {
				return b, nil
			}
		}
		return nil, nil
	}
	if m, ok := v.(map[string]any); ok && len(m) == 1 {
		for name, x := range m {
			for _, b := range u.Types() {
				if branchName(b) == name {
					return b, x
				}
			}
		}
	}
	for _, b := range u.Types() { // an unwrapped value: the branch of its Go type
		if fitsScalar(derefSchema(b), v) {
			return b, v
		}
	}
	return nil, nil
}

func branchName(s havro.Schema) string {
	s = derefSchema(s)
	if n, ok := s.(havro.NamedSchema); ok {
		return n.FullName()
	}
	if l := logicalOf(s); l != "" {
		return string(s.Type()) + "." + l
	}
	return string(s.Type())
}

func fitsScalar(s havro.Schema, v any) bool {
	if logicalOf(s) != "" {
		switch v.(type) {
		case time.Time, time.Duration, *big.Rat:
			return true
		}
		return s.Type() == havro.String && reflect.TypeOf(v).Kind() == reflect.String // uuid
	}
	switch s.Type() {
	case havro.Boolean:
		_, ok := v.(bool)
		return ok
	case havro.Int:
		_, ok := v.(int)
		return ok
	case havro.Long:
		_, ok := v.(int64)
		return ok
	case havro.Float:
		_, ok := v.(float32)
		return ok
	case havro.Double:
		_, ok := v.(float64)
		return ok
	case havro.String:
		_, ok := v.(string)
		return ok
	case havro.Bytes:
		_, ok := v.([]byte)
		return ok
	}
	return false
}

func derefSchema(s havro.Schema) havro.Schema {
	for {
		r, ok := s.(*havro.RefSchema)
		if !ok {
			return s
		}
		s = r.Schema()
	}
}

func logicalOf(s havro.Schema) string {
	if l, ok := s.(havro.LogicalTypeSchema); ok && l.Logical() != nil {
		return string(l.Logical().Type())
	}
	return ""
}

func describeSchema(s havro.Schema) string {
	if l, ok := s.(havro.LogicalTypeSchema); ok && l.Logical() != nil {
		return string(s.Type()) + " " + l.Logical().String()
	}
	return string(s.Type())
}

// schemaGen makes random schemas as JSON trees, changes to them, and events for them.
type schemaGen struct {
	rnd   *rand.Rand
	names int
}

func (g *schemaGen) name(prefix string) string {
	g.names++
	return fmt.Sprintf("%s%d", prefix, g.names)
}

// record returns a record schema with 1 to 4 fields.
func (g *schemaGen) record(name string, depth int) map[string]any {
	var fields []any
	for i := range 1 + g.rnd.IntN(4) {
		fields = append(fields, map[string]any{"name": fmt.Sprintf("f%d", i), "type": g.typ(depth + 1)})
	}
	return map[string]any{"type": "record", "name": name, "namespace": "t", "fields": fields}
}

var primitives = []string{"boolean", "int", "long", "float", "double", "string", "bytes"}

// typ returns a random type; named types are defined inline, each once.
func (g *schemaGen) typ(depth int) any {
	switch n := g.rnd.IntN(20); {
	case n < 8 || depth > 2:
		return primitives[g.rnd.IntN(len(primitives))]
	case n < 10:
		return g.logical()
	case n < 11:
		return map[string]any{"type": "enum", "name": g.name("E"), "symbols": []any{"A", "B", "C"}[:1+g.rnd.IntN(3)]}
	case n < 12:
		return map[string]any{"type": "fixed", "name": g.name("F"), "size": 2 + g.rnd.IntN(2)}
	case n < 14:
		return g.record(g.name("R"), depth)
	case n < 15:
		return map[string]any{"type": "array", "items": g.typ(depth + 1)}
	case n < 16:
		return map[string]any{"type": "map", "values": g.typ(depth + 1)}
	case n < 18:
		return []any{"null", g.branch(depth + 1)}
	default:
		a, b := primitives[g.rnd.IntN(len(primitives))], g.branch(depth+1)
		if a == b {
			return []any{"null", b}
		}
		return []any{a, b}
	}
}

// branch returns a random type that is not a union.
func (g *schemaGen) branch(depth int) any {
	for {
		if t := g.typ(depth); reflect.TypeOf(t).Kind() != reflect.Slice {
			return t
		}
	}
}

func (g *schemaGen) logical() any {
	switch g.rnd.IntN(5) {
	case 0:
		return map[string]any{"type": "long", "logicalType": "timestamp-millis"}
	case 1:
		return map[string]any{"type": "long", "logicalType": "timestamp-micros"}
	case 2:
		return map[string]any{"type": "int", "logicalType": "date"}
	case 3:
		return map[string]any{"type": "string", "logicalType": "uuid"}
	default:
		return map[string]any{"type": "bytes", "logicalType": "decimal", "precision": 6 + g.rnd.IntN(2), "scale": 1 + g.rnd.IntN(2)}
	}
}

// change applies one to three random changes to a copy of a record schema.
func (g *schemaGen) change(rec map[string]any) map[string]any {
	for range 1 + g.rnd.IntN(3) {
		recs := collectRecords(rec, nil)
		r := recs[g.rnd.IntN(len(recs))]
		fields := r["fields"].([]any)
		i := g.rnd.IntN(len(fields))
		f := fields[i].(map[string]any)
		switch g.rnd.IntN(8) {
		case 0: // add a field, with a default or without
			nf := map[string]any{"name": g.name("n"), "type": g.typ(3)}
			if g.rnd.IntN(3) > 0 {
				nf = g.withDefault(nf)
			}
			r["fields"] = append(fields, nf)
		case 1: // remove a field
			if len(fields) > 1 {
				r["fields"] = slices.Delete(fields, i, i+1)
			}
		case 2: // rename a field, keeping the old name as an alias
			f["aliases"] = []any{f["name"]}
			f["name"] = g.name("renamed")
		case 3: // make it optional, or no longer
			if u, ok := f["type"].([]any); ok && len(u) == 2 && u[0] == "null" {
				f["type"] = u[1]
				delete(f, "default")
			} else if !ok {
				f["type"], f["default"] = []any{"null", f["type"]}, nil
			}
		default: // change the type in place
			f["type"] = g.mutateType(f["type"])
		}
	}
	return rec
}

var promotions = map[string][]string{
	"int": {"long", "float", "double"}, "long": {"float", "double", "int"}, "float": {"double", "long"},
	"double": {"float"}, "string": {"bytes"}, "bytes": {"string"}, "boolean": {"int"},
}

func (g *schemaGen) mutateType(t any) any {
	switch x := t.(type) {
	case string:
		p := promotions[x]
		return p[g.rnd.IntN(len(p))]
	case []any:
		if len(x) > 1 && g.rnd.IntN(2) == 0 {
			return slices.Delete(slices.Clone(x), len(x)-1, len(x)) // drop the last branch
		}
		for _, p := range primitives {
			if !slices.Contains(x, any(p)) {
				return append(slices.Clone(x), p) // add a branch
			}
		}
		return x
	case map[string]any:
		switch x["type"] {
		case "enum":
			syms := x["symbols"].([]any)
			switch g.rnd.IntN(3) {
			case 0:
				x["symbols"] = append(slices.Clone(syms), g.name("S"))
			case 1:
				if len(syms) > 1 {
					x["symbols"] = syms[1:]
				}
			default:
				x["default"] = syms[0]
			}
		case "fixed":
			x["size"] = x["size"].(int) + 1
		case "record":
			if g.rnd.IntN(2) == 0 {
				x["namespace"] = "other"
			} else {
				x["name"], x["aliases"] = g.name("Renamed"), []any{"t." + x["name"].(string)}
			}
		case "array":
			x["items"] = g.mutateType(x["items"])
		case "map":
			x["values"] = g.mutateType(x["values"])
		default:
			return g.mutateLogical(x)
		}
		return x
	}
	return t
}

func (g *schemaGen) mutateLogical(x map[string]any) any {
	switch x["logicalType"] {
	case "timestamp-millis":
		return map[string]any{"type": "long", "logicalType": "timestamp-micros"}
	case "timestamp-micros":
		return "long"
	case "date":
		return map[string]any{"type": "long", "logicalType": "timestamp-millis"}
	case "uuid":
		return "string"
	case "decimal":
		x["scale"] = x["scale"].(int) + 1 - 2*g.rnd.IntN(2)
		return x
	}
	return x
}

// withDefault gives a new field a default of its type, or makes it optional.
func (g *schemaGen) withDefault(f map[string]any) map[string]any {
	switch t := f["type"].(type) {
	case string:
		f["default"] = map[string]any{"boolean": false, "int": 1, "long": 2, "float": 1.5, "double": 2.5, "string": "s", "bytes": "\u00ff"}[t]
	case []any:
		if t[0] == "null" {
			f["default"] = nil
		} else {
			f["type"], f["default"] = []any{"null", t[1]}, nil
		}
	case map[string]any:
		switch t["type"] {
		case "array":
			f["default"] = []any{}
		case "map":
			f["default"] = map[string]any{}
		case "enum":
			f["default"] = t["symbols"].([]any)[0]
		default:
			f["type"], f["default"] = []any{"null", t}, nil
		}
	}
	return f
}

// value returns a random event of schema s in natural JSON.
func (g *schemaGen) value(s any) any {
	switch x := s.(type) {
	case string:
		switch x {
		case "null":
			return nil
		case "boolean":
			return g.rnd.IntN(2) == 0
		case "int":
			return g.rnd.Int32() >> g.rnd.IntN(32)
		case "long":
			return g.rnd.Int64() >> (11 + g.rnd.IntN(53)) // within float64's exact integers
		case "float", "double":
			return float64(g.rnd.IntN(2000)-1000) / 8
		case "string":
			return fmt.Sprintf("s%d", g.rnd.IntN(1000))
		case "bytes":
			return base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("b%d", g.rnd.IntN(1000))))
		}
	case []any:
		b := x[g.rnd.IntN(len(x))]
		if b == "null" {
			return nil
		}
		if len(x) == 2 && x[0] == "null" {
			return g.value(b)
		}
		return map[string]any{unionKey(b): g.value(b)}
	case map[string]any:
		switch x["type"] {
		case "record":
			m := map[string]any{}
			for _, f := range x["fields"].([]any) {
				f := f.(map[string]any)
				m[f["name"].(string)] = g.value(f["type"])
			}
			return m
		case "enum":
			syms := x["symbols"].([]any)
			return syms[g.rnd.IntN(len(syms))]
		case "fixed":
			return base64.StdEncoding.EncodeToString(make([]byte, x["size"].(int)))
		case "array":
			a := []any{}
			for range g.rnd.IntN(3) {
				a = append(a, g.value(x["items"]))
			}
			return a
		case "map":
			m := map[string]any{}
			for i := range g.rnd.IntN(3) {
				m[fmt.Sprintf("k%d", i)] = g.value(x["values"])
			}
			return m
		}
		switch x["logicalType"] {
		case "timestamp-millis", "timestamp-micros":
			return g.rnd.Int64N(4e12)
		case "date":
			return g.rnd.IntN(30000)
		case "uuid":
			return fmt.Sprintf("%08x-0000-4000-8000-%012x", g.rnd.Uint32(), g.rnd.Int64N(1<<48))
		case "decimal":
			if x["scale"].(int) == 0 {
				return fmt.Sprint(g.rnd.IntN(1000))
			}
			return fmt.Sprintf("%d.%0*d", g.rnd.IntN(1000), x["scale"].(int), g.rnd.IntN(10))
		}
	}
	panic(fmt.Sprintf("no value for %#v", s))
}

// unionKey names a union branch in natural JSON.
func unionKey(b any) string {
	switch x := b.(type) {
	case string:
		return x
	case map[string]any:
		if n, ok := x["name"].(string); ok {
			return n
		}
		return x["type"].(string)
	}
	panic(fmt.Sprintf("no union key for %#v", b))
}

// collectRecords returns every record defined in the schema tree t.
func collectRecords(t any, out []map[string]any) []map[string]any {
	switch x := t.(type) {
	case []any:
		for _, b := range x {
			out = collectRecords(b, out)
		}
	case map[string]any:
		switch x["type"] {
		case "record":
			out = append(out, x)
			for _, f := range x["fields"].([]any) {
				out = collectRecords(f.(map[string]any)["type"], out)
			}
		case "array":
			out = collectRecords(x["items"], out)
		case "map":
			out = collectRecords(x["values"], out)
		}
	}
	return out
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = deepCopy(e)
		}
		return a
	}
	return v
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return strings.TrimSpace(string(b))
}
