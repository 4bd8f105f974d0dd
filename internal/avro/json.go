package avro

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"time"

	havro "github.com/hamba/avro/v2"
)

// FromJSON converts natural JSON (the shape a REST client would send, not
// Avro's JSON encoding) into the native Go value hamba/avro marshals for this
// schema, checking every field. The result has the same shape Decode returns:
//
//	record, map        map[string]any
//	array              []any
//	union              nil for null; the plain value if hamba's type
//	                   resolver knows every branch by name (primitives and
//	                   their logical types, as in ["null","string"]); else
//	                   map[string]any{branch: value} keyed by hamba's branch
//	                   name ("int", "shop.Card", "long.timestamp-millis")
//	int, long          int, int64
//	float, double      float32, float64
//	string, enum, uuid string
//	bytes              []byte
//	fixed              [N]byte
//	decimal            *big.Rat
//	timestamp-*, date  time.Time in UTC; for local-timestamp-* its wall clock
//	                   is the value (Encode takes a time.Time's wall clock in
//	                   its own location; see wallclock.go)
//	time-millis/micros time.Duration
//	duration           avro.LogicalDuration
//
// JSON rules: records are objects whose keys must be fields (a missing field
// takes its schema default, else fails "required"); int and long take
// integral numbers in range (1e3 and 2.0 count); float and double take
// numbers or "NaN", "Infinity", "-Infinity"; bytes and fixed take standard
// base64; enums take a symbol; maps take objects. A union ["null", T] takes
// null or T's value; any other union takes a value that fits exactly one
// branch, or {"branch": value} naming a branch by type name or (full or
// short) name, which wins over a record or map reading of the same object.
// Logical types: uuid takes the 8-4-4-4-12 hex form; timestamp-millis and
// -micros take RFC 3339 or integer epoch millis/micros, sub-unit digits are
// truncated; local-timestamp-* take the same without zone; date takes
// YYYY-MM-DD or integer days since 1970-01-01; time-millis and -micros take
// "HH:MM:SS[.frac]" or an integer count since midnight; decimal takes a
// number or a numeric string within the schema's precision and scale.
//
// Strings and bytes longer than MaxBytesSize and arrays or maps with more
// than MaxItems entries fail "range", since Decode would refuse them.
//
// Field rules declared in the schema (minimum, pattern, format, ...; see
// RuleMinimum) are checked on every value that fits its field's type.
//
// Malformed JSON wraps ErrMalformedJSON; values that do not fit return
// *ValidationError listing every failing field.
func (s *Schema) FromJSON(data []byte) (any, error) {
	v, nodes, err := parseJSON(data)
	if err != nil {
		return nil, err
	}
	c := converter{work: &workBudget{left: 4*nodes + 4096}, rules: s.rules}
	native, _ := c.convert(s.avro, v, "")
	if c.work.exhausted != nil {
		// Other errors found by then may be artefacts of the cut-off.
		return nil, &ValidationError{Fields: []FieldError{*c.work.exhausted}}
	}
	if len(c.errs) > 0 {
		return nil, &ValidationError{Fields: c.errs}
	}
	return native, nil
}

// EncodeJSON validates natural JSON with FromJSON and marshals it to Avro
// binary. Its errors are FromJSON's, plus hamba's marshal errors (which a
// successful FromJSON should rule out).
func (s *Schema) EncodeJSON(data []byte) ([]byte, error) {
	v, err := s.FromJSON(data)
	if err != nil {
		return nil, err
	}
	return s.encode(v) // FromJSON checked the field rules
}

// EncodeJSONWire is EncodeJSON in the Confluent wire format, as EncodeWire is Encode.
func (s *Schema) EncodeJSONWire(schemaID uint32, data []byte) ([]byte, error) {
	v, err := s.FromJSON(data)
	if err != nil {
		return nil, err
	}
	return s.appendEncoded(wireHeader(schemaID), v) // FromJSON checked the field rules
}

// converter turns a parsed JSON tree into native values, collecting errors.
type converter struct {
	errs  []FieldError
	work  *workBudget                  // shared with trial converters
	rules map[*havro.Field]*fieldRules // the schema's field rules, see rules.go
}

// workBudget bounds conversion work, so that trial conversions of nested
// look-alike union branches cannot take exponential time.
type workBudget struct {
	left      int
	exhausted *FieldError // where the budget ran out
}

func (c *converter) fail(path, rule, msg string, v any, showValue bool) {
	fe := FieldError{Path: path, Rule: rule, Message: msg}
	if showValue {
		fe.Value = shortJSON(v)
	}
	c.errs = append(c.errs, fe)
}

// trial returns a converter that shares c's budget but collects its own errors.
func (c *converter) trial() *converter { return &converter{work: c.work, rules: c.rules} }

func joinField(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func joinKey(path, key string) string {
	return path + "[" + string(appendJSONString(nil, key)) + "]"
}

func joinIndex(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range []byte(s) {
		if c != '_' && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// describe names a schema for messages: "int", "long (timestamp-millis)",
// "record shop.Customer".
func describe(s havro.Schema) string {
	s = deref(s)
	name := string(s.Type())
	if n, ok := s.(havro.NamedSchema); ok {
		name += " " + n.FullName()
	}
	if lt := logicalType(s); lt != "" {
		name += " (" + string(lt) + ")"
	}
	return name
}

func (c *converter) typeErr(s havro.Schema, v any, path string) {
	c.fail(path, RuleType, "expected "+describe(s)+", got "+jsonKind(v), v, !isBinary(s))
}

func isBinary(s havro.Schema) bool {
	s = deref(s)
	switch s.Type() {
	case havro.Bytes, havro.Fixed:
		lt := logicalType(s)
		return lt != havro.Decimal && lt != havro.Duration
	}
	return false
}

// convert returns the native value of v for schema s. ok is false when an
// error was recorded for v or below it.
func (c *converter) convert(s havro.Schema, v any, path string) (any, bool) {
	if c.work.left--; c.work.left < 0 {
		if c.work.exhausted == nil {
			c.work.exhausted = &FieldError{Path: path, Rule: RuleUnion,
				Message: "value too expensive to match against the schema's unions"}
		}
		return nil, false
	}
	s = deref(s)
	n := len(c.errs)
	out := c.convertType(s, v, path)
	return out, len(c.errs) == n
}

func (c *converter) convertType(s havro.Schema, v any, path string) any {
	switch s.Type() {
	case havro.Null:
		if v != nil {
			c.typeErr(s, v, path)
		}
		return nil
	case havro.Boolean:
		b, ok := v.(bool)
		if !ok {
			c.typeErr(s, v, path)
		}
		return b
	case havro.Int:
		switch logicalType(s) {
		case havro.Date:
			return c.date(v, path)
		case havro.TimeMillis:
			return c.timeOfDay(s, v, path, time.Millisecond)
		}
		n, ok := c.integer(s, v, path, 32)
		if !ok {
			return nil
		}
		return int(n)
	case havro.Long:
		switch lt := logicalType(s); lt {
		case havro.TimestampMillis, havro.TimestampMicros, havro.LocalTimestampMillis, havro.LocalTimestampMicros:
			return c.timestamp(s, lt, v, path)
		case havro.TimeMicros:
			return c.timeOfDay(s, v, path, time.Microsecond)
		}
		n, ok := c.integer(s, v, path, 64)
		if !ok {
			return nil
		}
		return n
	case havro.Float:
		f, _ := c.float(s, v, path, 32)
		return float32(f)
	case havro.Double:
		f, _ := c.float(s, v, path, 64)
		return f
	case havro.String:
		str, ok := v.(string)
		if !ok {
			c.typeErr(s, v, path)
			return ""
		}
		if len(str) > MaxBytesSize {
			c.fail(path, RuleRange, fmt.Sprintf("longer than %d bytes", MaxBytesSize), v, true)
			return ""
		}
		if logicalType(s) == havro.UUID && !isUUID(str) {
			c.fail(path, RuleUUID, "must be a UUID like 123e4567-e89b-12d3-a456-426614174000", v, true)
		}
		return str
	case havro.Bytes:
		if ds, ok := s.(*havro.PrimitiveSchema).Logical().(*havro.DecimalLogicalSchema); ok {
			return c.decimal(ds, 0, v, path)
		}
		b, _ := c.base64(s, v, path)
		return b
	case havro.Fixed:
		return c.fixed(s.(*havro.FixedSchema), v, path)
	case havro.Enum:
		return c.enum(s.(*havro.EnumSchema), v, path)
	case havro.Array:
		arr, ok := v.([]any)
		if !ok {
			c.typeErr(s, v, path)
			return nil
		}
		if len(arr) > MaxItems {
			c.fail(path, RuleRange, fmt.Sprintf("more than %d items", MaxItems), v, true)
			return nil
		}
		items := s.(*havro.ArraySchema).Items()
		out := make([]any, len(arr))
		for i, e := range arr {
			out[i], _ = c.convert(items, e, joinIndex(path, i))
		}
		return out
	case havro.Map:
		obj, ok := v.(*jsonObject)
		if !ok {
			c.typeErr(s, v, path)
			return nil
		}
		if len(obj.members) > MaxItems {
			c.fail(path, RuleRange, fmt.Sprintf("more than %d entries", MaxItems), v, true)
			return nil
		}
		values := s.(*havro.MapSchema).Values()
		out := make(map[string]any, len(obj.members))
		for _, m := range obj.members {
			out[m.key], _ = c.convert(values, m.val, joinKey(path, m.key))
		}
		return out
	case havro.Record:
		return c.record(s.(*havro.RecordSchema), v, path)
	case havro.Union:
		return c.union(s.(*havro.UnionSchema), v, path)
	default:
		c.fail(path, RuleType, "unsupported schema type "+string(s.Type()), v, false)
		return nil
	}
}

func (c *converter) record(rec *havro.RecordSchema, v any, path string) any {
	obj, ok := v.(*jsonObject)
	if !ok {
		c.typeErr(rec, v, path)
		return nil
	}
	out := make(map[string]any, len(rec.Fields()))
	known := make(map[string]struct{}, len(rec.Fields()))
	for _, f := range rec.Fields() {
		known[f.Name()] = struct{}{}
		fp := joinField(path, f.Name())
		fv, present := obj.get(f.Name())
		if !present {
			if f.HasDefault() {
				out[f.Name()] = nativeDefault(f.Type(), f.Default())
				continue
			}
			c.fail(fp, RuleRequired, "required field of "+describe(f.Type())+" is missing", nil, false)
			continue
		}
		native, ok := c.convert(f.Type(), fv, fp)
		out[f.Name()] = native
		if r := c.rules[f]; ok && r != nil {
			r.check(c, f.Type(), native, fp)
		}
	}
	for _, m := range obj.members {
		if _, ok := known[m.key]; ok {
			continue
		}
		fp := joinKey(path, m.key)
		if isIdent(m.key) {
			fp = joinField(path, m.key)
		}
		c.fail(fp, RuleUnknownField, "record "+rec.FullName()+" has no field "+strconv.Quote(m.key), nil, false)
	}
	return out
}

func (c *converter) integer(s havro.Schema, v any, path string, bits int) (int64, bool) {
	num, ok := v.(json.Number)
	if !ok {
		c.typeErr(s, v, path)
		return 0, false
	}
	n, integral, ok := parseInteger(string(num), bits)
	switch {
	case ok:
		return n, true
	case !integral:
		c.fail(path, RuleType, "expected "+describe(s)+", got a number with a fraction", v, true)
	default:
		c.fail(path, RuleRange, fmt.Sprintf("out of range for a %d-bit %s", bits, s.Type()), v, true)
	}
	return 0, false
}

func (c *converter) float(s havro.Schema, v any, path string, bits int) (float64, bool) {
	switch v := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(string(v), bits)
		if math.IsInf(f, 0) {
			c.fail(path, RuleRange, "out of range for a "+string(s.Type()), v, true)
			return 0, false
		}
		if err != nil {
			c.fail(path, RuleType, "expected "+describe(s)+": "+err.Error(), v, true)
			return 0, false
		}
		return f, true
	case string:
		switch v {
		case "NaN":
			return math.NaN(), true
		case "Infinity":
			return math.Inf(1), true
		case "-Infinity":
			return math.Inf(-1), true
		}
	}
	c.fail(path, RuleType, "expected "+describe(s)+` (a number, "NaN", "Infinity" or "-Infinity"), got `+jsonKind(v), v, true)
	return 0, false
}

func (c *converter) base64(s havro.Schema, v any, path string) ([]byte, bool) {
	str, ok := v.(string)
	if !ok {
		c.typeErr(s, v, path)
		return nil, false
	}
	b, err := base64.StdEncoding.Strict().DecodeString(str)
	if err != nil {
		c.fail(path, RuleBase64, "expected "+describe(s)+" as standard base64 with padding", v, false)
		return nil, false
	}
	if len(b) > MaxBytesSize {
		c.fail(path, RuleRange, fmt.Sprintf("longer than %d bytes", MaxBytesSize), v, false)
		return nil, false
	}
	return b, true
}

func (c *converter) fixed(fs *havro.FixedSchema, v any, path string) any {
	switch l := fs.Logical().(type) {
	case *havro.DecimalLogicalSchema:
		return c.decimal(l, fs.Size(), v, path)
	case nil:
	default:
		if l.Type() == havro.Duration {
			return c.duration(fs, v, path)
		}
	}
	b, ok := c.base64(fs, v, path)
	if !ok {
		return nil
	}
	if len(b) != fs.Size() {
		c.fail(path, RuleFixedSize, fmt.Sprintf("%s holds exactly %d bytes, got %d", describe(fs), fs.Size(), len(b)), v, false)
		return nil
	}
	return fixedValue(b)
}

// fixedValue returns b as a [len(b)]byte, the native value of a fixed.
func fixedValue(b []byte) any {
	arr := reflect.New(reflect.ArrayOf(len(b), reflect.TypeFor[byte]())).Elem()
	reflect.Copy(arr, reflect.ValueOf(b))
	return arr.Interface()
}

func (c *converter) duration(fs *havro.FixedSchema, v any, path string) any {
	obj, ok := v.(*jsonObject)
	if !ok {
		c.typeErr(fs, v, path)
		return nil
	}
	var d havro.LogicalDuration
	parts := []struct {
		name string
		dst  *uint32
	}{{"months", &d.Months}, {"days", &d.Days}, {"milliseconds", &d.Milliseconds}}
	for _, p := range parts {
		pv, present := obj.get(p.name)
		if !present {
			continue // absent parts are zero
		}
		num, ok := pv.(json.Number)
		if !ok {
			c.fail(joinField(path, p.name), RuleType, "expected a number, got "+jsonKind(pv), pv, true)
			continue
		}
		n, integral, ok := parseInteger(string(num), 64)
		if !ok || n < 0 || n > math.MaxUint32 {
			rule := RuleRange
			if !integral {
				rule = RuleType
			}
			c.fail(joinField(path, p.name), rule, "expected an integer from 0 to 4294967295", pv, true)
			continue
		}
		*p.dst = uint32(n)
	}
	for _, m := range obj.members {
		if m.key != "months" && m.key != "days" && m.key != "milliseconds" {
			c.fail(joinKey(path, m.key), RuleUnknownField, `duration has only "months", "days" and "milliseconds"`, nil, false)
		}
	}
	return d
}

func (c *converter) enum(es *havro.EnumSchema, v any, path string) any {
	str, ok := v.(string)
	if !ok {
		c.typeErr(es, v, path)
		return nil
	}
	for _, sym := range es.Symbols() {
		if sym == str {
			return str
		}
	}
	c.fail(path, RuleEnum, "must be one of "+strings.Join(es.Symbols(), ", "), v, true)
	return nil
}

// decimal converts a number or numeric string. size > 0 is the byte size of
// a fixed decimal, whose unscaled value must fit in size two's-complement
// bytes.
func (c *converter) decimal(ds *havro.DecimalLogicalSchema, size int, v any, path string) any {
	var text string
	switch v := v.(type) {
	case json.Number:
		text = string(v)
	case string:
		text = v
	default:
		c.fail(path, RuleType, fmt.Sprintf("expected decimal(%d,%d) as a number or string, got %s", ds.Precision(), ds.Scale(), jsonKind(v)), v, true)
		return nil
	}
	d, ok := parseDecimalText(text)
	if !ok {
		c.fail(path, RuleDecimal, "not a decimal number", v, true)
		return nil
	}
	r, problem := d.decimalRat(ds.Precision(), ds.Scale())
	if problem != "" {
		c.fail(path, RuleDecimal, problem, v, true)
		return nil
	}
	if size > 0 {
		unscaled := new(big.Int).Mul(r.Num(), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(ds.Scale())), nil))
		unscaled.Quo(unscaled, r.Denom())
		limit := new(big.Int).Lsh(big.NewInt(1), uint(8*size-1))
		if unscaled.Cmp(limit) >= 0 || unscaled.Cmp(new(big.Int).Neg(limit)) < 0 {
			c.fail(path, RuleDecimal, fmt.Sprintf("does not fit in %d bytes", size), v, true)
			return nil
		}
	}
	return r
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := range len(s) {
		ch := s[i]
		switch i {
		case 8, 13, 18, 23:
			if ch != '-' {
				return false
			}
		default:
			if !(ch >= '0' && ch <= '9' || ch >= 'a' && ch <= 'f' || ch >= 'A' && ch <= 'F') {
				return false
			}
		}
	}
	return true
}

const (
	localTimestampLayout = "2006-01-02T15:04:05.999999999"
	timeOfDayLayout      = "15:04:05.999999999"
)

func (c *converter) timestamp(s havro.Schema, lt havro.LogicalType, v any, path string) any {
	unit := time.Millisecond
	if lt == havro.TimestampMicros || lt == havro.LocalTimestampMicros {
		unit = time.Microsecond
	}
	local := lt == havro.LocalTimestampMillis || lt == havro.LocalTimestampMicros
	switch v := v.(type) {
	case string:
		if local {
			t, err := time.ParseInLocation(localTimestampLayout, v, time.UTC)
			if err != nil {
				c.fail(path, RuleTimestamp, "expected a local date-time like 2006-01-02T15:04:05.000 (no zone) or an integer", v, true)
				return nil
			}
			return t.Truncate(unit)
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			c.fail(path, RuleTimestamp, "expected an RFC 3339 timestamp like 2006-01-02T15:04:05.000Z or an integer", v, true)
			return nil
		}
		return t.UTC().Truncate(unit)
	case json.Number:
		n, integral, ok := parseInteger(string(v), 64)
		if !ok {
			rule := RuleRange
			if !integral {
				rule = RuleTimestamp
			}
			c.fail(path, rule, "expected an integer count of "+unitName(unit)+" since 1970-01-01T00:00:00Z", v, true)
			return nil
		}
		var t time.Time
		if unit == time.Millisecond {
			t = time.UnixMilli(n).UTC()
		} else {
			t = time.UnixMicro(n).UTC()
		}
		return t
	default:
		c.typeErr(s, v, path)
		return nil
	}
}

func unitName(unit time.Duration) string {
	if unit == time.Millisecond {
		return "milliseconds"
	}
	return "microseconds"
}

const secondsPerDay = 24 * 60 * 60

func (c *converter) date(v any, path string) any {
	switch v := v.(type) {
	case string:
		t, err := time.Parse(time.DateOnly, v)
		if err != nil {
			c.fail(path, RuleDate, "expected a date like 2006-01-02 or an integer day count", v, true)
			return nil
		}
		return t
	case json.Number:
		n, integral, ok := parseInteger(string(v), 32)
		if !ok {
			rule := RuleRange
			if !integral {
				rule = RuleDate
			}
			c.fail(path, rule, "expected a 32-bit integer count of days since 1970-01-01", v, true)
			return nil
		}
		return time.Unix(n*secondsPerDay, 0).UTC()
	default:
		c.fail(path, RuleType, "expected a date string or an integer, got "+jsonKind(v), v, true)
		return nil
	}
}

func (c *converter) timeOfDay(s havro.Schema, v any, path string, unit time.Duration) any {
	switch v := v.(type) {
	case string:
		t, err := time.Parse(timeOfDayLayout, v)
		if err != nil {
			c.fail(path, RuleTime, "expected a time of day like 15:04:05.000 or an integer", v, true)
			return nil
		}
		d := time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute +
			time.Duration(t.Second())*time.Second + time.Duration(t.Nanosecond())
		return d.Truncate(unit)
	case json.Number:
		n, integral, ok := parseInteger(string(v), 64)
		day := int64(24 * time.Hour / unit)
		if !ok || n < 0 || n >= day {
			rule := RuleRange
			if !integral {
				rule = RuleTime
			}
			c.fail(path, rule, fmt.Sprintf("expected an integer count of %s from 0 to %d", unitName(unit), day-1), v, true)
			return nil
		}
		return time.Duration(n) * unit
	default:
		c.typeErr(s, v, path)
		return nil
	}
}

// union converts v for a union. See FromJSON for the accepted shapes.
func (c *converter) union(u *havro.UnionSchema, v any, path string) any {
	types := u.Types()
	if v == nil {
		for _, t := range types {
			if deref(t).Type() == havro.Null {
				return nil
			}
		}
		c.fail(path, RuleUnion, "null is not allowed; branches are "+branchList(u), v, true)
		return nil
	}
	if nb := nullableBranch(u); nb >= 0 {
		b := deref(types[nb])
		// Accept Avro's JSON encoding {"T": value} as well, where that cannot
		// be mistaken for T's own value.
		if obj, ok := v.(*jsonObject); ok && len(obj.members) == 1 && b.Type() != havro.Record && b.Type() != havro.Map {
			if idx, _ := branchByName(u, obj.members[0].key); idx == nb {
				v, path = obj.members[0].val, joinKey(path, obj.members[0].key)
			}
		}
		native, ok := c.convert(b, v, path)
		if !ok {
			return nil
		}
		return unionNative(u, nb, native)
	}

	if obj, ok := v.(*jsonObject); ok && len(obj.members) == 1 {
		key := obj.members[0].key
		idx, ambiguous := branchByName(u, key)
		if ambiguous {
			c.fail(joinKey(path, key), RuleUnion, "branch name "+strconv.Quote(key)+" is ambiguous; use the full name", nil, false)
			return nil
		}
		if idx >= 0 {
			native, ok := c.convert(types[idx], obj.members[0].val, joinKey(path, key))
			if !ok {
				return nil
			}
			return unionNative(u, idx, native)
		}
	}

	candidates := matchingBranches(u, v, true)
	if len(candidates) == 0 {
		loose := matchingBranches(u, v, false)
		if len(loose) == 1 {
			candidates = loose // report that branch's own errors
		} else {
			c.fail(path, RuleUnion, "a "+jsonKind(v)+" matches none of the branches "+branchList(u), v, true)
			return nil
		}
	}
	if len(candidates) == 1 {
		native, ok := c.convert(types[candidates[0]], v, path)
		if !ok {
			return nil
		}
		return unionNative(u, candidates[0], native)
	}
	var (
		matched []int
		result  any
		closest []FieldError // errors of the failed trial with the fewest
	)
	for _, idx := range candidates {
		t := c.trial()
		native, ok := t.convert(types[idx], v, path)
		if c.work.exhausted != nil {
			return nil
		}
		if ok {
			matched = append(matched, idx)
			result = unionNative(u, idx, native)
		} else if closest == nil || len(t.errs) < len(closest) {
			closest = t.errs
		}
	}
	switch len(matched) {
	case 0:
		// Report why the closest branch failed, rather than a bare "no match".
		c.errs = append(c.errs, closest...)
		return nil
	case 1:
		return result
	default:
		names := make([]string, len(matched))
		for i, idx := range matched {
			names[i] = jsonBranchName(u, idx)
		}
		c.fail(path, RuleUnion, fmt.Sprintf("matches several branches (%s); wrap it as {%q: value}",
			strings.Join(names, ", "), names[0]), v, true)
		return nil
	}
}

func branchList(u *havro.UnionSchema) string {
	names := make([]string, len(u.Types()))
	for i := range u.Types() {
		names[i] = jsonBranchName(u, i)
	}
	return strings.Join(names, ", ")
}

// branchByName finds the branch a wrapper key names: hamba's native name,
// the Avro type name, or a named type's full or short name. It returns -1 if
// none matches, and ambiguous if several do.
func branchByName(u *havro.UnionSchema, key string) (idx int, ambiguous bool) {
	idx = -1
	for i, t := range u.Types() {
		if nativeBranchName(t) == key {
			return i, false
		}
	}
	for i, t := range u.Types() {
		t = deref(t)
		match := avroName(t) == key
		if n, ok := t.(havro.NamedSchema); ok && n.Name() == key {
			match = true
		}
		if match {
			if idx >= 0 {
				return -1, true
			}
			idx = i
		}
	}
	return idx, false
}

// matchingBranches returns the non-null branches whose type accepts the JSON
// kind of v. strict also checks enum symbols and record field names, to
// avoid trial conversions that cannot succeed.
func matchingBranches(u *havro.UnionSchema, v any, strict bool) []int {
	var out []int
	for i, t := range u.Types() {
		if kindMatches(deref(t), v, strict) {
			out = append(out, i)
		}
	}
	return out
}

func kindMatches(s havro.Schema, v any, strict bool) bool {
	lt := logicalType(s)
	switch v := v.(type) {
	case bool:
		return s.Type() == havro.Boolean
	case json.Number:
		switch s.Type() {
		case havro.Int, havro.Long, havro.Float, havro.Double:
			return true
		case havro.Bytes, havro.Fixed:
			return lt == havro.Decimal
		}
	case string:
		switch s.Type() {
		case havro.String, havro.Bytes:
			return true
		case havro.Fixed:
			return lt != havro.Duration
		case havro.Enum:
			if !strict {
				return true
			}
			for _, sym := range s.(*havro.EnumSchema).Symbols() {
				if sym == v {
					return true
				}
			}
		case havro.Int, havro.Long:
			return lt != ""
		case havro.Float, havro.Double:
			return v == "NaN" || v == "Infinity" || v == "-Infinity"
		}
	case []any:
		return s.Type() == havro.Array
	case *jsonObject:
		switch s.Type() {
		case havro.Map:
			return true
		case havro.Fixed:
			return lt == havro.Duration
		case havro.Record:
			if !strict {
				return true
			}
			rec := s.(*havro.RecordSchema)
			for _, m := range v.members {
				if !hasField(rec, m.key) {
					return false
				}
			}
			for _, f := range rec.Fields() {
				if _, present := v.get(f.Name()); !present && !f.HasDefault() {
					return false
				}
			}
			return true
		}
	}
	return false
}

func hasField(rec *havro.RecordSchema, name string) bool {
	for _, f := range rec.Fields() {
		if f.Name() == name {
			return true
		}
	}
	return false
}

// nativeDefault converts a field default as hamba stores it into the native
// shape FromJSON produces, copying mutable values.
func nativeDefault(s havro.Schema, def any) any {
	s = deref(s)
	lt := logicalType(s)
	switch s.Type() {
	case havro.Null:
		return nil
	case havro.Union:
		u := s.(*havro.UnionSchema)
		return unionNative(u, 0, nativeDefault(u.Types()[0], def))
	case havro.Record:
		m, _ := def.(map[string]any)
		out := make(map[string]any, len(m))
		for _, f := range s.(*havro.RecordSchema).Fields() {
			out[f.Name()] = nativeDefault(f.Type(), m[f.Name()])
		}
		return out
	case havro.Map:
		m, _ := def.(map[string]any)
		out := make(map[string]any, len(m))
		for k, v := range m {
			out[k] = nativeDefault(s.(*havro.MapSchema).Values(), v)
		}
		return out
	case havro.Array:
		arr, _ := def.([]any)
		out := make([]any, len(arr))
		for i, v := range arr {
			out[i] = nativeDefault(s.(*havro.ArraySchema).Items(), v)
		}
		return out
	case havro.Int:
		n := toInt64(def)
		switch lt {
		case havro.Date:
			return time.Unix(n*secondsPerDay, 0).UTC()
		case havro.TimeMillis:
			return time.Duration(n) * time.Millisecond
		}
		return int(n)
	case havro.Long:
		n := toInt64(def)
		switch lt {
		case havro.TimestampMillis:
			return time.UnixMilli(n).UTC()
		case havro.TimestampMicros:
			return time.UnixMicro(n).UTC()
		case havro.LocalTimestampMillis, havro.LocalTimestampMicros:
			return wallTime(n, lt)
		case havro.TimeMicros:
			return time.Duration(n) * time.Microsecond
		}
		return n
	case havro.Float:
		switch f := def.(type) {
		case float32:
			return f
		case float64:
			return float32(f)
		}
		return float32(0)
	case havro.Double:
		switch f := def.(type) {
		case float32:
			return float64(f)
		case float64:
			return f
		}
		return toFloat64(def)
	case havro.Bytes:
		b, _ := def.([]byte)
		if ds, ok := s.(*havro.PrimitiveSchema).Logical().(*havro.DecimalLogicalSchema); ok {
			return ratFromTwosComplement(b, ds.Scale())
		}
		return append([]byte{}, b...)
	case havro.Fixed:
		fs := s.(*havro.FixedSchema)
		rv := reflect.ValueOf(def)
		b := make([]byte, fs.Size())
		if rv.Kind() == reflect.Array {
			reflect.Copy(reflect.ValueOf(b), rv)
		}
		switch l := fs.Logical().(type) {
		case *havro.DecimalLogicalSchema:
			return ratFromTwosComplement(b, l.Scale())
		case nil:
		default:
			if l.Type() == havro.Duration {
				return durationFromBytes(b)
			}
		}
		return fixedValue(b)
	default: // string, enum, boolean
		return def
	}
}

func toInt64(v any) int64 {
	switch n := v.(type) {
	case int:
		return int64(n)
	case int32:
		return int64(n)
	case int64:
		return n
	case float64:
		return int64(n)
	}
	return 0
}

func toFloat64(v any) float64 {
	switch n := v.(type) {
	case int:
		return float64(n)
	case int64:
		return float64(n)
	}
	return 0
}

// ratFromTwosComplement reads a big-endian two's-complement unscaled value.
func ratFromTwosComplement(b []byte, scale int) *big.Rat {
	num := new(big.Int).SetBytes(b)
	if len(b) > 0 && b[0]&0x80 != 0 {
		num.Sub(num, new(big.Int).Lsh(big.NewInt(1), uint(len(b))*8))
	}
	den := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale)), nil)
	return new(big.Rat).SetFrac(num, den)
}

func durationFromBytes(b []byte) havro.LogicalDuration {
	le := func(p []byte) uint32 { return uint32(p[0]) | uint32(p[1])<<8 | uint32(p[2])<<16 | uint32(p[3])<<24 }
	return havro.LogicalDuration{Months: le(b[0:4]), Days: le(b[4:8]), Milliseconds: le(b[8:12])}
}
