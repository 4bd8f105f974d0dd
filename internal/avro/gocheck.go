package avro

import (
	"fmt"
	"math"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	havro "github.com/hamba/avro/v2"
)

// Encode takes Go values, which hamba/avro converts without range checks: a Go int above
// 2^31 in an Avro int field is written as int32(v), a *big.Rat with more fractional digits
// than the decimal's scale is rounded, a time.Duration of 30 days in a time-millis field
// wraps, a date before 1970 that is not midnight UTC is written as the next day, and a
// uuid field takes any string. FromJSON refuses all of these in JSON; goChecker refuses
// them in Go values, before hamba sees them, with the same rules and paths.

// checkGo returns a *ValidationError listing every value in v that hamba/avro would not
// write as given, and every string in a uuid field that is not a UUID, or nil.
func (s *Schema) checkGo(v any) error { return s.checkGoValues(v, false) }

// checkGoChanges is checkGo without the uuid format, which hamba writes as given: a
// *ValidationError listing only the values hamba/avro would write as other values.
func (s *Schema) checkGoChanges(v any) error { return s.checkGoValues(v, true) }

func (s *Schema) checkGoValues(v any, changesOnly bool) error {
	if !s.goChecks {
		return nil
	}
	c := goChecker{changesOnly: changesOnly}
	c.value(s.avro, reflect.ValueOf(v))
	if len(c.errs) > 0 {
		return &ValidationError{Fields: c.errs}
	}
	return nil
}

// needsGoCheck reports whether a value of s can hold something checkGo refuses.
func needsGoCheck(s havro.Schema) bool {
	seen := map[havro.Schema]bool{}
	var walk func(s havro.Schema) bool
	walk = func(s havro.Schema) bool {
		s = deref(s)
		if seen[s] {
			return false
		}
		seen[s] = true
		switch d := s.(type) {
		case *havro.RecordSchema:
			for _, f := range d.Fields() {
				if walk(f.Type()) {
					return true
				}
			}
		case *havro.ArraySchema:
			return walk(d.Items())
		case *havro.MapSchema:
			return walk(d.Values())
		case *havro.UnionSchema:
			for _, t := range d.Types() {
				if walk(t) {
					return true
				}
			}
		default:
			_, dec := getDecimal(s)
			return s.Type() == havro.Int || s.Type() == havro.Long && logicalType(s) != "" ||
				dec || logicalType(s) == havro.UUID
		}
		return false
	}
	return walk(s)
}

// goChecker walks a Go value the way hamba/avro encodes it: records from map[string]any
// or structs (fields named by their `avro` tag, else their Go name, embedded structs
// included), arrays from slices, maps from maps, unions from {"branch": value} wrappers,
// nil or the plain value.
type goChecker struct {
	// changesOnly skips the checks of values hamba writes unchanged (a uuid field's format).
	changesOnly bool
	errs        []FieldError
	path        []pathElem // rendered only when a check fails
	depth       int
}

type pathElem struct {
	field string // a record field, or
	key   string // a map key or union branch (isKey), or
	index int    // an array index
	isKey bool
}

func (c *goChecker) fail(rule, msg string, v any) {
	var b strings.Builder
	for _, e := range c.path {
		switch {
		case e.field != "":
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(e.field)
		case e.isKey:
			b.WriteByte('[')
			b.Write(appendJSONString(nil, e.key))
			b.WriteByte(']')
		default:
			b.WriteString("[" + strconv.Itoa(e.index) + "]")
		}
	}
	c.errs = append(c.errs, FieldError{Path: b.String(), Rule: rule, Message: msg, Value: shortJSON(v)})
}

func (c *goChecker) push(e pathElem) { c.path = append(c.path, e) }
func (c *goChecker) pop()            { c.path = c.path[:len(c.path)-1] }

// value checks v, a Go value for schema s.
func (c *goChecker) value(s havro.Schema, v reflect.Value) {
	for v.Kind() == reflect.Interface || v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	if !v.IsValid() || c.depth > MaxDepth {
		return
	}
	c.depth++
	defer func() { c.depth-- }()
	s = deref(s)
	switch d := s.(type) {
	case *havro.RecordSchema:
		c.record(d, v)
	case *havro.ArraySchema:
		if v.Kind() != reflect.Slice && v.Kind() != reflect.Array {
			return
		}
		for i := range v.Len() {
			c.push(pathElem{index: i})
			c.value(d.Items(), v.Index(i))
			c.pop()
		}
	case *havro.MapSchema:
		if v.Kind() != reflect.Map || v.Type().Key().Kind() != reflect.String {
			return
		}
		it := v.MapRange()
		for it.Next() {
			c.push(pathElem{key: it.Key().String(), isKey: true})
			c.value(d.Values(), it.Value())
			c.pop()
		}
	case *havro.UnionSchema:
		c.union(d, v)
	default:
		c.scalar(s, v)
	}
}

func (c *goChecker) record(r *havro.RecordSchema, v reflect.Value) {
	switch {
	case v.Type() == mapType:
		// The common case, without reflect's allocations for each field's lookup.
		m := v.Interface().(map[string]any)
		for _, f := range r.Fields() {
			x, ok := m[f.Name()]
			if !ok {
				continue // hamba writes the default
			}
			c.push(pathElem{field: f.Name()})
			c.value(f.Type(), reflect.ValueOf(x))
			c.pop()
		}
	case v.Kind() == reflect.Map && v.Type().Key().Kind() == reflect.String:
		for _, f := range r.Fields() {
			fv := v.MapIndex(reflect.ValueOf(f.Name()).Convert(v.Type().Key()))
			if !fv.IsValid() {
				continue // hamba writes the default
			}
			c.push(pathElem{field: f.Name()})
			c.value(f.Type(), fv)
			c.pop()
		}
	case v.Kind() == reflect.Struct:
		fields := structFields(v.Type())
		for _, f := range r.Fields() {
			idx, ok := fields[f.Name()]
			if !ok {
				continue
			}
			fv, err := v.FieldByIndexErr(idx)
			if err != nil {
				continue // through a nil embedded pointer
			}
			c.push(pathElem{field: f.Name()})
			c.value(f.Type(), fv)
			c.pop()
		}
	}
}

func (c *goChecker) union(u *havro.UnionSchema, v reflect.Value) {
	if v.Kind() == reflect.Map && v.Type().Key().Kind() == reflect.String && v.Len() == 1 {
		it := v.MapRange()
		it.Next()
		name := it.Key().String()
		for _, t := range u.Types() {
			if nativeBranchName(t) == name {
				c.push(pathElem{key: name, isKey: true})
				c.value(t, it.Value())
				c.pop()
				return
			}
		}
	}
	if nb := nullableBranch(u); nb >= 0 {
		c.value(u.Types()[nb], v)
		return
	}
	if v.CanInterface() {
		if i := plainBranch(u, v.Interface()); i >= 0 {
			c.value(u.Types()[i], v)
		}
	}
}

var (
	mapType      = reflect.TypeFor[map[string]any]()
	timeType     = reflect.TypeFor[time.Time]()
	durationType = reflect.TypeFor[time.Duration]()
	ratType      = reflect.TypeFor[big.Rat]()
)

func (c *goChecker) scalar(s havro.Schema, v reflect.Value) {
	lt := logicalType(s)
	switch s.Type() {
	case havro.Int, havro.Long:
		switch {
		case v.Type() == durationType && (lt == havro.TimeMillis || lt == havro.TimeMicros):
			if d := time.Duration(v.Int()); d < 0 || d >= 24*time.Hour {
				c.fail(RuleRange, "a time of day must be from 0 to 24h, got "+d.String(), d.String())
			}
		case v.Type() == timeType && v.CanInterface():
			c.timeValue(lt, v.Interface().(time.Time))
		case s.Type() == havro.Int && lt == "":
			// hamba writes int32(v) for the Go kinds it takes for an Avro int.
			switch v.Kind() {
			case reflect.Int, reflect.Int64:
				if n := v.Int(); n < math.MinInt32 || n > math.MaxInt32 {
					c.fail(RuleRange, "out of range for a 32-bit int", n)
				}
			case reflect.Uint, reflect.Uint64, reflect.Uint32:
				if n := v.Uint(); n > math.MaxInt32 {
					c.fail(RuleRange, "out of range for a 32-bit int", n)
				}
			}
		}
	case havro.String:
		if lt == havro.UUID && !c.changesOnly && v.Kind() == reflect.String && !isUUID(v.String()) {
			c.fail(RuleUUID, "must be a UUID like 123e4567-e89b-12d3-a456-426614174000", v.String())
		}
	case havro.Bytes, havro.Fixed:
		ds, ok := getDecimal(s)
		if !ok || v.Type() != ratType || !v.CanAddr() || !v.Addr().CanInterface() {
			return
		}
		r := v.Addr().Interface().(*big.Rat)
		scaled := new(big.Int).Mul(r.Num(), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(ds.Scale())), nil))
		if new(big.Int).Rem(scaled, r.Denom()).Sign() != 0 {
			c.fail(RuleDecimal, fmt.Sprintf("has more digits after the decimal point than the scale %d; it would be rounded", ds.Scale()), r.RatString())
		}
	}
}

// timeValue checks a time.Time for a date or timestamp field.
func (c *goChecker) timeValue(lt havro.LogicalType, t time.Time) {
	switch lt {
	case havro.Date:
		sec := t.Unix()
		days := floorDiv(sec, secondsPerDay)
		switch {
		case days < math.MinInt32 || days > math.MaxInt32:
			c.fail(RuleRange, "out of range for a date (a 32-bit day count)", t.Format(time.RFC3339Nano))
		case sec < 0 && sec%secondsPerDay != 0:
			// hamba divides with truncation: 1969-12-31T12:00Z would be stored as 1970-01-01.
			c.fail(RuleDate, "a date before 1970 must be midnight UTC", t.Format(time.RFC3339Nano))
		}
	case havro.TimestampMillis, havro.TimestampMicros, havro.LocalTimestampMillis, havro.LocalTimestampMicros:
		if lt == havro.LocalTimestampMillis || lt == havro.LocalTimestampMicros {
			// Written as its own wall clock read as UTC (see wallclock.go).
			t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
		}
		perSec := int64(1e3)
		if lt == havro.TimestampMicros || lt == havro.LocalTimestampMicros {
			perSec = 1e6
		}
		if !fitsEpochCount(t, perSec) {
			c.fail(RuleRange, "out of range for a 64-bit count of "+unitName(time.Second/time.Duration(perSec))+" since 1970", t.Format(time.RFC3339Nano))
		}
	}
}

// fitsEpochCount reports whether t in units of 1/perSec seconds since 1970 fits an int64.
func fitsEpochCount(t time.Time, perSec int64) bool {
	sec := t.Unix()
	if lim := math.MaxInt64/perSec - 1; -lim <= sec && sec <= lim {
		return true
	}
	n := new(big.Int).Mul(big.NewInt(sec), big.NewInt(perSec))
	n.Add(n, big.NewInt(int64(t.Nanosecond())/(1e9/perSec)))
	return n.IsInt64()
}

// structFieldCache maps a struct type to its fields by hamba's names.
var structFieldCache sync.Map // reflect.Type -> map[string][]int

// structFields returns the fields of struct type t that hamba/avro matches record fields
// to, by name: the `avro` tag's name, else the Go name; exported fields only, embedded
// structs searched breadth first, the first found winning.
func structFields(t reflect.Type) map[string][]int {
	if m, ok := structFieldCache.Load(t); ok {
		return m.(map[string][]int)
	}
	out := map[string][]int{}
	type level struct {
		t   reflect.Type
		idx []int
	}
	next := []level{{t: t}}
	visited := map[reflect.Type]bool{}
	for len(next) > 0 {
		curr := next
		next = nil
		for _, l := range curr {
			if visited[l.t] {
				continue
			}
			visited[l.t] = true
			for i := range l.t.NumField() {
				f := l.t.Field(i)
				idx := append(append([]int{}, l.idx...), i)
				if f.Anonymous {
					ft := f.Type
					if ft.Kind() == reflect.Pointer {
						ft = ft.Elem()
					}
					if ft.Kind() == reflect.Struct {
						next = append(next, level{t: ft, idx: idx})
					}
					continue
				}
				if !f.IsExported() {
					continue
				}
				name := f.Name
				if tag, ok := f.Tag.Lookup("avro"); ok {
					name, _, _ = strings.Cut(tag, ",")
				}
				if _, dup := out[name]; !dup {
					out[name] = idx
				}
			}
		}
	}
	structFieldCache.Store(t, out)
	return out
}
