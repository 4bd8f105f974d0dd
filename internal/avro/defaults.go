package avro

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"

	havro "github.com/hamba/avro/v2"
)

// CheckDefaults fails when a field default in schema text is not a value of its field's
// type, or is one that hamba/avro cannot hold exactly. hamba reads defaults as float64 and
// converts them without checks, so it accepts, and then writes, wrong values:
//
//   - an int default that is fractional (1.5 became 1) or beyond 32 bits
//     (3000000000 became -1294967296);
//   - a long default that a float64 does not hold (9007199254740993 became
//     9007199254740992; 9223372036854775807 became -9223372036854775808);
//   - a float default beyond float32's range (1e300 became +Inf);
//   - a fixed default of the wrong length (cut or padded with zeros);
//   - a decimal default with more digits than its precision, a uuid default
//     that is not a UUID, a time-millis or time-micros default outside a day.
//
// Those values would be written into events that left the field out, and read into old
// events that did not have it. The registry runs CheckDefaults, after CheckNesting, on
// every schema it is given. Parse does not, so that a schema stored before the check
// still loads.
func CheckDefaults(text string) error {
	s, err := Parse(text)
	if err != nil {
		return err
	}
	d := json.NewDecoder(strings.NewReader(text))
	d.UseNumber()
	var raw any
	if err := d.Decode(&raw); err != nil {
		return fmt.Errorf("avro: parsing schema: %w", err)
	}
	return walkDefaults(raw, s.avro)
}

// walkDefaults checks the defaults of the fields of every record defined in raw, the
// schema text's JSON, whose parsed form is s. A record defined once and referred to by
// name elsewhere is a *havro.RefSchema there, so each definition is checked once.
func walkDefaults(raw any, s havro.Schema) error {
	switch r := raw.(type) {
	case []any:
		u, ok := s.(*havro.UnionSchema)
		if !ok || len(u.Types()) != len(r) {
			return nil
		}
		for i, t := range u.Types() {
			if err := walkDefaults(r[i], t); err != nil {
				return err
			}
		}
	case map[string]any:
		if inner, ok := r["type"].([]any); ok {
			return walkDefaults(inner, s)
		}
		switch d := s.(type) {
		case *havro.RecordSchema:
			fields, _ := r["fields"].([]any)
			if len(fields) != len(d.Fields()) {
				return nil
			}
			for i, f := range d.Fields() {
				fr, _ := fields[i].(map[string]any)
				if def, ok := fr["default"]; ok {
					if err := checkDefault(f.Type(), def); err != nil {
						return fmt.Errorf("avro: field %s of %s: default %s: %w", f.Name(), d.FullName(), shortDefault(def), err)
					}
				}
				if err := walkDefaults(fr["type"], f.Type()); err != nil {
					return err
				}
			}
		case *havro.ArraySchema:
			return walkDefaults(r["items"], d.Items())
		case *havro.MapSchema:
			return walkDefaults(r["values"], d.Values())
		}
	}
	return nil
}

func shortDefault(def any) string {
	b, err := json.Marshal(def)
	if err != nil || len(b) > maxShownValue {
		return "(value)"
	}
	return string(b)
}

// checkDefault checks def, a default as encoding/json reads it with UseNumber, against
// type t. Kinds hamba rejects (a string for an int, say) never get here.
func checkDefault(t havro.Schema, def any) error {
	t = deref(t)
	lt := logicalType(t)
	switch t.Type() {
	case havro.Union:
		return checkDefault(t.(*havro.UnionSchema).Types()[0], def)
	case havro.Int, havro.Long:
		num, ok := def.(json.Number)
		if !ok {
			return nil
		}
		bits := 32
		if t.Type() == havro.Long {
			bits = 64
		}
		n, integral, ok := parseInteger(string(num), bits)
		switch {
		case !integral:
			return fmt.Errorf("is not an integer")
		case !ok:
			return fmt.Errorf("is out of range for a %d-bit %s", bits, t.Type())
		}
		if f, err := strconv.ParseFloat(string(num), 64); err != nil || f < -(1<<63) || f >= 1<<63 || int64(f) != n {
			return fmt.Errorf("cannot be held exactly: schema defaults are read as 64-bit floats; " +
				"use a value from -2^53 to 2^53, or one a float64 holds exactly")
		}
		var day int64
		switch lt {
		case havro.TimeMillis:
			day = int64(24 * time.Hour / time.Millisecond)
		case havro.TimeMicros:
			day = int64(24 * time.Hour / time.Microsecond)
		}
		if day > 0 && (n < 0 || n >= day) {
			return fmt.Errorf("is not a time of day: want 0 to %d", day-1)
		}
	case havro.Float, havro.Double:
		num, ok := def.(json.Number)
		if !ok {
			return nil
		}
		bits := 32
		if t.Type() == havro.Double {
			bits = 64
		}
		if f, err := strconv.ParseFloat(string(num), bits); err != nil || math.IsInf(f, 0) {
			return fmt.Errorf("is out of range for a %s", t.Type())
		}
	case havro.String:
		if str, ok := def.(string); ok && lt == havro.UUID && !isUUID(str) {
			return fmt.Errorf("is not a UUID in 8-4-4-4-12 form")
		}
	case havro.Bytes, havro.Fixed:
		str, ok := def.(string)
		if !ok {
			return nil
		}
		b := make([]byte, 0, len(str))
		for _, r := range str {
			b = append(b, byte(r)) // hamba checked that every code point is 0 to 255
		}
		if fs, ok := t.(*havro.FixedSchema); ok && len(b) != fs.Size() {
			return fmt.Errorf("has %d bytes, %s holds exactly %d", len(b), describe(fs), fs.Size())
		}
		if ds, ok := getDecimal(t); ok {
			unscaled := ratFromTwosComplement(b, 0).Num()
			if digits := len(new(big.Int).Abs(unscaled).String()); unscaled.Sign() != 0 && digits > ds.Precision() {
				return fmt.Errorf("has %d digits, more than the precision %d", digits, ds.Precision())
			}
		}
	case havro.Record:
		m, ok := def.(map[string]any)
		if !ok {
			return nil
		}
		for _, f := range t.(*havro.RecordSchema).Fields() {
			if v, present := m[f.Name()]; present {
				if err := checkDefault(f.Type(), v); err != nil {
					return fmt.Errorf("%s: %w", f.Name(), err)
				}
			}
		}
	case havro.Array:
		arr, _ := def.([]any)
		for i, v := range arr {
			if err := checkDefault(t.(*havro.ArraySchema).Items(), v); err != nil {
				return fmt.Errorf("[%d]: %w", i, err)
			}
		}
	case havro.Map:
		m, _ := def.(map[string]any)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if err := checkDefault(t.(*havro.MapSchema).Values(), m[k]); err != nil {
				return fmt.Errorf("[%q]: %w", k, err)
			}
		}
	}
	return nil
}
