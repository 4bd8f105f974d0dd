package avro

import (
	"bytes"
	"encoding/json"
	"reflect"
	"time"

	havro "github.com/hamba/avro/v2"
)

// Avro's local-timestamp-millis and -micros hold a wall clock without a zone: the count of
// milli- or microseconds from 1970-01-01T00:00 to that wall clock read as if it were UTC.
// hamba/avro carries them as time.Time in the process's zone: it writes t.Local()'s wall
// clock and reads a count back by taking off the zone's offset at the instant the count
// names. In a zone with daylight-saving time (TZ=Europe/Berlin) a wall clock in the hour
// skipped in spring cannot be written (02:30 became 03:30) and counts near either change
// come back an hour off (01:30 on the autumn day read as 02:30). So hamba never sees a
// time.Time for those fields here: Encode hands it the count, computed from the value's
// own wall clock, and Decode reads with a copy of the schema whose local-timestamp longs
// are plain longs, then turns the counts into time.Time in UTC with that wall clock.
// Nothing depends on the process's zone.

// wallClocks converts the local-timestamp values of one schema; nil when it has none.
type wallClocks struct {
	plain havro.Schema          // the schema without local-timestamp logical types, for decoding (see plainSchema)
	has   map[havro.Schema]bool // dereferenced schemas whose values can hold a local timestamp
}

// isLocalTimestamp reports whether s (dereferenced) is a local-timestamp long.
func isLocalTimestamp(s havro.Schema) bool {
	lt := logicalType(s)
	return s.Type() == havro.Long && (lt == havro.LocalTimestampMillis || lt == havro.LocalTimestampMicros)
}

// newWallClocks returns the conversions for s, or nil when no value of s holds a local
// timestamp. Its plain schema is s itself when the copy without the logical types cannot
// be made or does not parse (stripLocalTimestamps keeps the duplicates that would not):
// then hamba reads every local timestamp through time.Local, right but near a
// daylight-saving change, and native still gives them in UTC; a stored schema never
// becomes unreadable, and values are still written as their wall clocks.
func newWallClocks(s havro.Schema) *wallClocks {
	has := localTimestampSchemas(s)
	if !has[deref(s)] {
		return nil
	}
	return &wallClocks{plain: plainSchema(s), has: has}
}

// plainSchema returns s without local-timestamp logical types (see stripLocalTimestamps),
// or s when that cannot be made.
func plainSchema(s havro.Schema) havro.Schema {
	full, err := json.Marshal(s)
	if err != nil {
		return s
	}
	d := json.NewDecoder(bytes.NewReader(full))
	d.UseNumber() // a long default beyond 2^53 stays exact
	var tree any
	if d.Decode(&tree) != nil {
		return s
	}
	stripLocalTimestamps(tree)
	text, err := json.Marshal(tree)
	if err != nil {
		return s
	}
	plain, err := parseHamba(string(text))
	if err != nil {
		return s
	}
	return plain
}

// localTimestampSchemas returns the schemas reachable from s (dereferenced) whose values can
// hold a local timestamp: the local-timestamp longs and every record, array, map and union
// with one inside, recursive types included.
func localTimestampSchemas(s havro.Schema) map[havro.Schema]bool {
	var nodes []havro.Schema
	children := map[havro.Schema][]havro.Schema{}
	var collect func(s havro.Schema)
	collect = func(s havro.Schema) {
		s = deref(s)
		if _, seen := children[s]; seen {
			return
		}
		var kids []havro.Schema
		switch d := s.(type) {
		case *havro.RecordSchema:
			for _, f := range d.Fields() {
				kids = append(kids, deref(f.Type()))
			}
		case *havro.ArraySchema:
			kids = append(kids, deref(d.Items()))
		case *havro.MapSchema:
			kids = append(kids, deref(d.Values()))
		case *havro.UnionSchema:
			for _, t := range d.Types() {
				kids = append(kids, deref(t))
			}
		}
		children[s] = kids
		nodes = append(nodes, s)
		for _, k := range kids {
			collect(k)
		}
	}
	collect(s)
	has := map[havro.Schema]bool{}
	for _, n := range nodes {
		if isLocalTimestamp(n) {
			has[n] = true
		}
	}
	// A recursive record reaches a local timestamp through itself: spread until nothing changes.
	for changed := true; changed; {
		changed = false
		for _, n := range nodes {
			if has[n] {
				continue
			}
			for _, k := range children[n] {
				if has[k] {
					has[n], changed = true, true
					break
				}
			}
		}
	}
	return has
}

// stripLocalTimestamps removes the local-timestamp logical types from a schema's JSON tree,
// leaving default values alone, and those of a union's branches where that would leave two
// plain longs (the Avro specification calls a union of a long and a local-timestamp long,
// or of both local-timestamp units, a duplicate; hamba/avro accepts it, but not once they
// are plain longs): hamba reads those branches through time.Local (see wallClocks.native).
func stripLocalTimestamps(v any) {
	switch d := v.(type) {
	case map[string]any:
		if isLocalTimestampJSON(d) {
			delete(d, "logicalType")
		}
		for k, x := range d {
			if k != "default" {
				stripLocalTimestamps(x)
			}
		}
	case []any:
		longs := 0
		for _, x := range d {
			if x == "long" || isLocalTimestampJSON(x) {
				longs++
			} else if m, ok := x.(map[string]any); ok && m["type"] == "long" {
				switch m["logicalType"] {
				case string(havro.TimestampMillis), string(havro.TimestampMicros), string(havro.TimeMicros):
				default:
					longs++ // no logical type hamba knows: a plain long
				}
			}
		}
		for _, x := range d {
			if longs > 1 && isLocalTimestampJSON(x) {
				continue
			}
			stripLocalTimestamps(x)
		}
	}
}

// isLocalTimestampJSON reports whether v is a local-timestamp long in a schema's JSON tree.
func isLocalTimestampJSON(v any) bool {
	m, ok := v.(map[string]any)
	return ok && m["type"] == "long" &&
		(m["logicalType"] == string(havro.LocalTimestampMillis) || m["logicalType"] == string(havro.LocalTimestampMicros))
}

// wallCount returns t's wall clock, in its own location, as a local-timestamp count.
func wallCount(t time.Time, lt havro.LogicalType) int64 {
	w := time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
	if lt == havro.LocalTimestampMicros {
		return w.UnixMicro()
	}
	return w.UnixMilli()
}

// wallTime returns the time.Time in UTC whose wall clock a local-timestamp count names.
func wallTime(n int64, lt havro.LogicalType) time.Time {
	if lt == havro.LocalTimestampMicros {
		return time.UnixMicro(n).UTC()
	}
	return time.UnixMilli(n).UTC()
}

// wire returns v, a Go value for s, with every time.Time in a local-timestamp field replaced
// by its count, for hamba to write as a plain long. It copies what it changes and leaves v
// alone: records come back as map[string]any (a struct on the way to a local timestamp
// too, its fields read as hamba reads them), arrays as []any, maps as map[string]any, and
// a plain value of a nullable union that changed its Go type as {branch name: new value}.
// Values that are not what their schema takes are left for hamba to refuse.
func (w *wallClocks) wire(s havro.Schema, v any) any {
	s = deref(s)
	if !w.has[s] || v == nil {
		return v
	}
	switch d := s.(type) {
	case *havro.RecordSchema:
		if m, ok := v.(map[string]any); ok {
			out := make(map[string]any, len(m))
			for k, x := range m {
				out[k] = x
			}
			for _, f := range d.Fields() {
				if x, ok := m[f.Name()]; ok {
					out[f.Name()] = w.wire(f.Type(), x)
				}
			}
			return out
		}
		rv := indirect(reflect.ValueOf(v))
		if rv.Kind() == reflect.Map {
			if m, ok := rv.Interface().(map[string]any); ok {
				return w.wire(s, m) // a pointer to a map, which hamba takes as the map
			}
		}
		if rv.Kind() != reflect.Struct {
			return v
		}
		fields := structFields(rv.Type())
		out := make(map[string]any, len(d.Fields()))
		for _, f := range d.Fields() {
			idx, ok := fields[f.Name()]
			if !ok {
				continue // hamba writes the default
			}
			fv, err := rv.FieldByIndexErr(idx)
			if err != nil {
				return v // through a nil embedded pointer: hamba refuses the struct
			}
			if !fv.CanInterface() {
				continue
			}
			out[f.Name()] = w.wire(f.Type(), fv.Interface())
		}
		return out
	case *havro.ArraySchema:
		rv := reflect.ValueOf(v)
		if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
			return v
		}
		out := make([]any, rv.Len())
		for i := range out {
			out[i] = w.wire(d.Items(), rv.Index(i).Interface())
		}
		return out
	case *havro.MapSchema:
		rv := reflect.ValueOf(v)
		if rv.Kind() != reflect.Map || rv.Type().Key().Kind() != reflect.String {
			return v
		}
		out := make(map[string]any, rv.Len())
		for it := rv.MapRange(); it.Next(); {
			out[it.Key().String()] = w.wire(d.Values(), it.Value().Interface())
		}
		return out
	case *havro.UnionSchema:
		if m, ok := v.(map[string]any); ok && len(m) == 1 {
			for name, x := range m {
				for _, t := range d.Types() {
					if nativeBranchName(t) == name {
						return map[string]any{name: w.wire(t, x)}
					}
				}
			}
		}
		nb := nullableBranch(d)
		if nb < 0 {
			return v // a plain value of a union hamba knows by name holds no local timestamp
		}
		given := v
		rv := reflect.ValueOf(v)
		if rv.Kind() == reflect.Pointer {
			if rv.IsNil() {
				return nil
			}
			if rv.Elem().Kind() != reflect.Struct {
				v = rv.Elem().Interface()
			}
		}
		// A value that changed its Go type (a count, a struct or a pointer to a map now a
		// map) is wrapped in its branch's name: hamba would look a count up as a "long" and
		// take a map for a wrapper.
		b := d.Types()[nb]
		out := w.wire(b, v)
		if reflect.TypeOf(out) != reflect.TypeOf(given) {
			return map[string]any{nativeBranchName(b): out}
		}
		return out
	default:
		if !isLocalTimestamp(s) {
			return v
		}
		switch t := v.(type) {
		case time.Time:
			return wallCount(t, logicalType(s))
		case *time.Time:
			if t != nil {
				return wallCount(*t, logicalType(s))
			}
		}
		return v
	}
}

// indirect follows pointers and interfaces to the value they hold.
func indirect(v reflect.Value) reflect.Value {
	for (v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface) && !v.IsNil() {
		v = v.Elem()
	}
	return v
}

// native turns v, decoded by hamba with the plain schema, into the native value of orig:
// counts in local-timestamp fields become time.Time in UTC, and union values take the
// shape orig's union gives them (see unionNative). It changes v's maps and slices in place.
func (w *wallClocks) native(orig, plain havro.Schema, v any) any {
	orig, plain = deref(orig), deref(plain)
	if !w.has[orig] || v == nil {
		return v
	}
	switch d := orig.(type) {
	case *havro.RecordSchema:
		m, ok := v.(map[string]any)
		pr, okp := plain.(*havro.RecordSchema)
		if !ok || !okp {
			return v
		}
		for i, f := range d.Fields() {
			if x, ok := m[f.Name()]; ok && w.has[deref(f.Type())] {
				m[f.Name()] = w.native(f.Type(), pr.Fields()[i].Type(), x)
			}
		}
	case *havro.ArraySchema:
		a, ok := v.([]any)
		pa, okp := plain.(*havro.ArraySchema)
		if !ok || !okp {
			return v
		}
		for i, x := range a {
			a[i] = w.native(d.Items(), pa.Items(), x)
		}
	case *havro.MapSchema:
		m, ok := v.(map[string]any)
		pm, okp := plain.(*havro.MapSchema)
		if !ok || !okp {
			return v
		}
		for k, x := range m {
			m[k] = w.native(d.Values(), pm.Values(), x)
		}
	case *havro.UnionSchema:
		pu, ok := plain.(*havro.UnionSchema)
		if !ok {
			return v
		}
		idx, inner := -1, v
		if plainUnion(pu) {
			idx = plainBranch(pu, v)
		} else if m, ok := v.(map[string]any); ok && len(m) == 1 {
			for name, x := range m {
				for i, t := range pu.Types() {
					if nativeBranchName(t) == name {
						idx, inner = i, x
					}
				}
			}
		}
		if idx < 0 {
			return v
		}
		return unionNative(d, idx, w.native(d.Types()[idx], pu.Types()[idx], inner))
	default:
		if !isLocalTimestamp(orig) {
			return v
		}
		switch t := v.(type) {
		case int64:
			return wallTime(t, logicalType(orig))
		case time.Time:
			// Read by hamba through time.Local, where the plain schema keeps the logical
			// type (see stripLocalTimestamps): its wall clock there, in UTC.
			return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
		}
	}
	return v
}
