package avro

import (
	"fmt"
	"math"
	"strings"
	"unsafe"

	havro "github.com/hamba/avro/v2"
)

// Encode checks the field rules of what it encoded. The general way decodes the Avro again
// into native values and walks them (checkRules); for a 300-byte event that took three
// quarters of Encode's time. When every field with rules is reached from the top record
// through record fields only, and holds a single value (a number, a string, an enum, or a
// union of such and null), binaryRules checks the rules on the Avro binary instead, reading
// only the values the rules apply to. The two ways report the same failures in the same
// order; FuzzBinaryRulesMatchNative holds them to it.

// binaryRulesApply reports whether binaryRules can check the rules of the record s.
func binaryRulesApply(s *havro.RecordSchema, rules map[*havro.Field]*fieldRules) bool {
	ok := true
	var walk func(r *havro.RecordSchema, seen map[*havro.RecordSchema]bool)
	walk = func(r *havro.RecordSchema, seen map[*havro.RecordSchema]bool) {
		if seen[r] {
			return
		}
		seen[r] = true
		for _, f := range r.Fields() {
			t := deref(f.Type())
			switch {
			case rules[f] != nil:
				ok = ok && singleValue(t)
			case t.Type() == havro.Record:
				walk(t.(*havro.RecordSchema), seen)
			default:
				ok = ok && !rulesBelow(t, rules, map[*havro.RecordSchema]bool{})
			}
		}
	}
	walk(s, map[*havro.RecordSchema]bool{})
	return ok
}

// singleValue reports whether t holds one value with no record, array or map in it.
func singleValue(t havro.Schema) bool {
	t = deref(t)
	if u, ok := t.(*havro.UnionSchema); ok {
		for _, b := range u.Types() {
			if !singleValue(b) {
				return false
			}
		}
		return true
	}
	switch t.Type() {
	case havro.Record, havro.Array, havro.Map:
		return false
	}
	return true
}

// rulesBelow reports whether a record reachable from t has a field with rules.
func rulesBelow(t havro.Schema, rules map[*havro.Field]*fieldRules, seen map[*havro.RecordSchema]bool) bool {
	switch d := deref(t).(type) {
	case *havro.RecordSchema:
		if seen[d] {
			return false
		}
		seen[d] = true
		for _, f := range d.Fields() {
			if rules[f] != nil || rulesBelow(f.Type(), rules, seen) {
				return true
			}
		}
	case *havro.ArraySchema:
		return rulesBelow(d.Items(), rules, seen)
	case *havro.MapSchema:
		return rulesBelow(d.Values(), rules, seen)
	case *havro.UnionSchema:
		for _, b := range d.Types() {
			if rulesBelow(b, rules, seen) {
				return true
			}
		}
	}
	return false
}

// binaryRules checks field rules on Avro binary that checkEncoded accepted.
type binaryRules struct {
	c     payloadChecker
	rules map[*havro.Field]*fieldRules
	path  []string // field names from the top record to the value being read
	errs  []FieldError
}

func (w *binaryRules) fail(_, rule, msg string, v any, showValue bool) {
	fe := FieldError{Path: strings.Join(w.path, "."), Rule: rule, Message: msg}
	if showValue {
		fe.Value = shortJSON(v)
	}
	w.errs = append(w.errs, fe)
}

func (w *binaryRules) record(r *havro.RecordSchema) error {
	for _, f := range r.Fields() {
		w.path = append(w.path, f.Name())
		t := deref(f.Type())
		var err error
		switch {
		case w.rules[f] != nil:
			err = w.value(w.rules[f], t)
		case t.Type() == havro.Record:
			err = w.record(t.(*havro.RecordSchema))
		default:
			err = w.c.value(t, 0)
		}
		if err != nil {
			return err
		}
		w.path = w.path[:len(w.path)-1]
	}
	return nil
}

// value reads a value of t and applies r to it, as fieldRules.check does to its native form.
func (w *binaryRules) value(r *fieldRules, t havro.Schema) error {
	if u, ok := t.(*havro.UnionSchema); ok {
		i, err := w.c.int()
		if err != nil {
			return err
		}
		t = deref(u.Types()[i])
	}
	var v any
	switch {
	case t.Type() == havro.Null:
		return nil
	case isNumberType(t):
		switch t.Type() {
		case havro.Int:
			n, err := w.c.int()
			v = int(n)
			if err != nil {
				return err
			}
		case havro.Long:
			n, err := w.c.long()
			v = n
			if err != nil {
				return err
			}
		case havro.Float:
			if err := w.c.skip(4); err != nil {
				return err
			}
			b := w.c.b[w.c.pos-4 : w.c.pos]
			v = math.Float32frombits(uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24)
		default:
			if err := w.c.skip(8); err != nil {
				return err
			}
			b := w.c.b[w.c.pos-8 : w.c.pos]
			var u uint64
			for k := 7; k >= 0; k-- {
				u = u<<8 | uint64(b[k])
			}
			v = math.Float64frombits(u)
		}
	case t.Type() == havro.String:
		n, err := w.c.long()
		if err != nil {
			return err
		}
		if n < 0 {
			return fmt.Errorf("negative length %d", n)
		}
		if err := w.c.skip(n); err != nil {
			return err
		}
		// Not a copy: the string lives only while checkScalar reads it, and a failure
		// renders its value anew (shortJSON). Copying every checked string was a fifth of
		// what encoding an event allocated.
		v = unsafe.String(unsafe.SliceData(w.c.b[w.c.pos-int(n):]), int(n))
	case t.Type() == havro.Enum:
		i, err := w.c.int()
		if err != nil {
			return err
		}
		v = t.(*havro.EnumSchema).Symbols()[i]
	default:
		return w.c.value(t, 0)
	}
	r.checkScalar(w, t, v, "")
	return nil
}

// checkRulesBinary checks s's field rules on b, Avro that checkEncoded accepted.
func (s *Schema) checkRulesBinary(b []byte) error {
	w := binaryRules{c: payloadChecker{b: b, items: len(b) + extraItems, utf8: true}, rules: s.rules}
	if err := w.record(s.avro.(*havro.RecordSchema)); err != nil {
		return fmt.Errorf("avro: checking rules of %s: %w", s.fullName, err)
	}
	if len(w.errs) > 0 {
		return &ValidationError{Fields: w.errs}
	}
	return nil
}
