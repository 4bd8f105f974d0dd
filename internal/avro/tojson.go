package avro

import (
	"encoding/base64"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"slices"
	"strconv"
	"time"

	havro "github.com/hamba/avro/v2"
)

// DecodeJSON decodes an Avro payload written with this schema and renders it
// as natural JSON that FromJSON accepts back, so JSON -> Avro -> JSON -> Avro
// round-trips. Errors are Decode's.
func (s *Schema) DecodeJSON(payload []byte) ([]byte, error) {
	v, err := s.Decode(payload)
	if err != nil {
		return nil, err
	}
	return s.RenderJSON(v)
}

// RenderJSON renders a native value of this schema (from Decode,
// ResolveDecode with this schema as reader, or FromJSON) as natural JSON:
// record fields in schema order, map keys sorted, a ["null", T] union as
// null or T's value, any other union as null or {"branch": value}, bytes and
// fixed as standard base64, decimals as strings with exactly scale digits,
// timestamps as RFC 3339 in UTC with nanosecond precision where needed,
// dates as YYYY-MM-DD, times of day as HH:MM:SS.fff (millis) or
// HH:MM:SS.ffffff (micros), NaN and infinities as "NaN", "Infinity",
// "-Infinity". Dates and times that have no such text form (years outside
// 0000-9999, times of day outside 24h) are rendered as the integer Avro
// stores. A Go value that does not fit the schema is an error.
func (s *Schema) RenderJSON(v any) ([]byte, error) {
	return appendJSON(nil, s.avro, v, "")
}

func renderErr(s havro.Schema, v any, path string) error {
	if path == "" {
		path = "(root)"
	}
	return fmt.Errorf("avro: rendering %s at %s: unexpected Go value of type %T", describe(s), path, v)
}

func appendJSON(b []byte, s havro.Schema, v any, path string) ([]byte, error) {
	s = deref(s)
	lt := logicalType(s)
	switch s.Type() {
	case havro.Null:
		if v != nil {
			return nil, renderErr(s, v, path)
		}
		return append(b, "null"...), nil
	case havro.Boolean:
		x, ok := v.(bool)
		if !ok {
			return nil, renderErr(s, v, path)
		}
		return strconv.AppendBool(b, x), nil
	case havro.Int, havro.Long:
		switch x := v.(type) {
		case time.Time:
			return appendTime(b, lt, x)
		case time.Duration:
			if lt != havro.TimeMillis && lt != havro.TimeMicros {
				return nil, renderErr(s, v, path)
			}
			return appendTimeOfDay(b, lt, x), nil
		}
		n, ok := asInt64(v)
		if !ok || lt != "" {
			return nil, renderErr(s, v, path)
		}
		return strconv.AppendInt(b, n, 10), nil
	case havro.Float, havro.Double:
		var (
			f    float64
			bits = 64
		)
		switch x := v.(type) {
		case float32:
			f, bits = float64(x), 32
		case float64:
			f = x
		default:
			return nil, renderErr(s, v, path)
		}
		switch {
		case math.IsNaN(f):
			return append(b, `"NaN"`...), nil
		case math.IsInf(f, 1):
			return append(b, `"Infinity"`...), nil
		case math.IsInf(f, -1):
			return append(b, `"-Infinity"`...), nil
		}
		return strconv.AppendFloat(b, f, 'g', -1, bits), nil
	case havro.String, havro.Enum:
		x, ok := v.(string)
		if !ok {
			return nil, renderErr(s, v, path)
		}
		return appendJSONString(b, x), nil
	case havro.Bytes, havro.Fixed:
		switch x := v.(type) {
		case *big.Rat:
			ds, ok := getDecimal(s)
			if !ok || x == nil {
				return nil, renderErr(s, v, path)
			}
			b = append(b, '"')
			b = append(b, x.FloatString(ds.Scale())...)
			return append(b, '"'), nil
		case havro.LogicalDuration:
			return fmt.Appendf(b, `{"months":%d,"days":%d,"milliseconds":%d}`, x.Months, x.Days, x.Milliseconds), nil
		case []byte:
			if s.Type() != havro.Bytes {
				return nil, renderErr(s, v, path)
			}
			return appendBase64(b, x), nil
		}
		if fs, ok := s.(*havro.FixedSchema); ok {
			rv := reflect.ValueOf(v)
			if rv.Kind() == reflect.Array && rv.Type().Elem().Kind() == reflect.Uint8 && rv.Len() == fs.Size() {
				raw := make([]byte, rv.Len())
				reflect.Copy(reflect.ValueOf(raw), rv)
				return appendBase64(b, raw), nil
			}
		}
		return nil, renderErr(s, v, path)
	case havro.Array:
		arr, ok := v.([]any)
		if !ok {
			return nil, renderErr(s, v, path)
		}
		items := s.(*havro.ArraySchema).Items()
		b = append(b, '[')
		for i, e := range arr {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendJSON(b, items, e, joinIndex(path, i)); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case havro.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, renderErr(s, v, path)
		}
		values := s.(*havro.MapSchema).Values()
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			var err error
			if b, err = appendJSON(b, values, m[k], joinKey(path, k)); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	case havro.Record:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, renderErr(s, v, path)
		}
		b = append(b, '{')
		for i, f := range s.(*havro.RecordSchema).Fields() {
			fv, present := m[f.Name()]
			if !present {
				return nil, fmt.Errorf("avro: rendering %s: field %s is missing", describe(s), joinField(path, f.Name()))
			}
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, f.Name())
			b = append(b, ':')
			var err error
			if b, err = appendJSON(b, f.Type(), fv, joinField(path, f.Name())); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	case havro.Union:
		return appendUnion(b, s.(*havro.UnionSchema), v, path)
	default:
		return nil, renderErr(s, v, path)
	}
}

func appendUnion(b []byte, u *havro.UnionSchema, v any, path string) ([]byte, error) {
	if v == nil {
		if _, i := u.Types().Get(string(havro.Null)); i >= 0 {
			return append(b, "null"...), nil
		}
		return nil, renderErr(u, v, path)
	}
	idx := -1
	if m, ok := v.(map[string]any); ok && len(m) == 1 {
		for name, val := range m {
			if _, i := u.Types().Get(name); i >= 0 {
				idx, v = i, val
			}
		}
	}
	if idx < 0 && plainUnion(u) {
		idx = plainBranch(u, v)
	}
	if idx < 0 {
		return nil, renderErr(u, v, path)
	}
	branch := u.Types()[idx]
	if deref(branch).Type() == havro.Null {
		return append(b, "null"...), nil
	}
	if nullableBranch(u) == idx {
		return appendJSON(b, branch, v, path)
	}
	key := jsonBranchName(u, idx)
	b = append(b, '{')
	b = appendJSONString(b, key)
	b = append(b, ':')
	b, err := appendJSON(b, branch, v, joinKey(path, key))
	if err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

func getDecimal(s havro.Schema) (*havro.DecimalLogicalSchema, bool) {
	lts, ok := s.(havro.LogicalTypeSchema)
	if !ok {
		return nil, false
	}
	ds, ok := lts.Logical().(*havro.DecimalLogicalSchema)
	return ds, ok
}

func asInt64(v any) (int64, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true
	case int8:
		return int64(x), true
	case int16:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case uint8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint32:
		return int64(x), true
	}
	return 0, false
}

func appendBase64(b, raw []byte) []byte {
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, raw)
	return append(b, '"')
}

// appendTime renders a date or timestamp; see RenderJSON.
func appendTime(b []byte, lt havro.LogicalType, t time.Time) ([]byte, error) {
	switch lt {
	case havro.Date:
		t = t.UTC()
		if t.Year() < 0 || t.Year() > 9999 {
			return strconv.AppendInt(b, floorDiv(t.Unix(), secondsPerDay), 10), nil
		}
		b = t.AppendFormat(append(b, '"'), time.DateOnly)
		return append(b, '"'), nil
	case havro.TimestampMillis, havro.TimestampMicros:
		t = t.UTC()
		if t.Year() < 0 || t.Year() > 9999 {
			if lt == havro.TimestampMillis {
				return strconv.AppendInt(b, t.UnixMilli(), 10), nil
			}
			return strconv.AppendInt(b, t.UnixMicro(), 10), nil
		}
		b = t.AppendFormat(append(b, '"'), time.RFC3339Nano)
		return append(b, '"'), nil
	case havro.LocalTimestampMillis, havro.LocalTimestampMicros:
		if t.Year() < 0 || t.Year() > 9999 {
			wall := time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
			if lt == havro.LocalTimestampMillis {
				return strconv.AppendInt(b, wall.UnixMilli(), 10), nil
			}
			return strconv.AppendInt(b, wall.UnixMicro(), 10), nil
		}
		b = t.AppendFormat(append(b, '"'), localTimestampLayout)
		return append(b, '"'), nil
	}
	return nil, fmt.Errorf("avro: rendering time.Time for logical type %q", lt)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// appendTimeOfDay renders a time-millis or time-micros value.
func appendTimeOfDay(b []byte, lt havro.LogicalType, d time.Duration) []byte {
	unit, digits := time.Millisecond, 3
	if lt == havro.TimeMicros {
		unit, digits = time.Microsecond, 6
	}
	if d < 0 || d >= 24*time.Hour {
		return strconv.AppendInt(b, int64(d/unit), 10)
	}
	frac := int64(d%time.Second) / int64(unit)
	return fmt.Appendf(b, `"%02d:%02d:%02d.%0*d"`, int(d/time.Hour), int(d%time.Hour/time.Minute),
		int(d%time.Minute/time.Second), digits, frac)
}
