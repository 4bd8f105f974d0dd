package avro

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	havro "github.com/hamba/avro/v2"
)

// Field rules are custom properties of a record field in the .avsc, checked by
// FromJSON, EncodeJSON and Encode after the value fits the field's type:
//
//	{"name": "quantity", "type": "int", "minimum": 1, "maximum": 1000}
//	{"name": "email", "type": "string", "format": "email", "maxLength": 254}
//	{"name": "sku", "type": "string", "pattern": "^[A-Z]+-[0-9]+$"}
//	{"name": "items", "type": {"type": "array", ...}, "minItems": 1}
//
// The vocabulary, with JSON Schema's meanings:
//
//	minimum, maximum                    number: value >= minimum, <= maximum
//	exclusiveMinimum, exclusiveMaximum  number: value > / < the bound
//	minLength, maxLength                string: length in Unicode code points
//	pattern                             string: RE2 regular expression that must
//	                                    match somewhere (anchor it with ^...$)
//	format                              string: "email" (one bare address),
//	                                    "uuid" (8-4-4-4-12 hex), "uri" (absolute
//	                                    URI with a scheme)
//	minItems, maxItems                  array or map: number of items or entries
//
// Numbers are int, long, float and double fields without a logical type;
// strings are string fields (uuid ones included) and enums. A rule on a
// nullable field (["null", T]) applies to non-null values. A number or string
// rule on an array or map field applies to each item or value, so
// "maxLength" on an array of strings bounds every string; minItems and
// maxItems apply to the collection itself. Nested records, arrays of records,
// maps and unions are walked: every field's rules are checked wherever the
// record appears.
//
// A failed rule is a FieldError whose Rule is the property name. A
// declaration that cannot be applied (a bound that is not a number, a
// negative or fractional length, a pattern that does not compile, an unknown
// format, a rule on a field of the wrong type, a default that breaks a rule)
// makes Parse fail.
const (
	RuleMinimum          = "minimum"
	RuleMaximum          = "maximum"
	RuleExclusiveMinimum = "exclusiveMinimum"
	RuleExclusiveMaximum = "exclusiveMaximum"
	RuleMinLength        = "minLength"
	RuleMaxLength        = "maxLength"
	RulePattern          = "pattern"
	RuleFormat           = "format"
	RuleMinItems         = "minItems"
	RuleMaxItems         = "maxItems"
)

// Formats lists the values the "format" rule accepts.
var Formats = []string{"email", "uri", "uuid"}

// fieldRules are the compiled rules of one record field.
type fieldRules struct {
	bounds   []bound // numbers
	minLen   int     // -1: unset
	maxLen   int     // -1: unset
	pattern  *regexp.Regexp
	format   string
	minItems int // -1: unset
	maxItems int // -1: unset
}

type bound struct {
	rule  string
	limit float64
}

func (b bound) ok(x float64) bool {
	switch b.rule {
	case RuleMinimum:
		return x >= b.limit
	case RuleMaximum:
		return x <= b.limit
	case RuleExclusiveMinimum:
		return x > b.limit
	default:
		return x < b.limit
	}
}

// maxExactInt is 2^53: every integer of at most this magnitude is a float64.
const maxExactInt = 1 << 53

// okInt is ok for an int or long, compared exactly: beyond 2^53 a float64 comparison
// rounds the value first, so a maximum of 2^53 would let 2^53+1 through.
func (b bound) okInt(n int64) bool {
	if -maxExactInt <= n && n <= maxExactInt {
		return b.ok(float64(n))
	}
	c := new(big.Float).SetInt64(n).Cmp(big.NewFloat(b.limit)) // both exact
	switch b.rule {
	case RuleMinimum:
		return c >= 0
	case RuleMaximum:
		return c <= 0
	case RuleExclusiveMinimum:
		return c > 0
	default:
		return c < 0
	}
}

func (b bound) message() string {
	n := strconv.FormatFloat(b.limit, 'g', -1, 64)
	switch b.rule {
	case RuleMinimum:
		return "must be at least " + n
	case RuleMaximum:
		return "must be at most " + n
	case RuleExclusiveMinimum:
		return "must be greater than " + n
	default:
		return "must be less than " + n
	}
}

func (r *fieldRules) hasScalar() bool {
	return len(r.bounds) > 0 || r.minLen >= 0 || r.maxLen >= 0 || r.pattern != nil || r.format != ""
}

// compileRules walks every record reachable from s and compiles the rules
// declared on its fields. It returns nil when no field declares any.
func compileRules(s havro.Schema) (map[*havro.Field]*fieldRules, error) {
	out := map[*havro.Field]*fieldRules{}
	seen := map[*havro.RecordSchema]bool{}
	var walk func(s havro.Schema) error
	walk = func(s havro.Schema) error {
		switch d := deref(s).(type) {
		case *havro.RecordSchema:
			if seen[d] {
				return nil
			}
			seen[d] = true
			for _, f := range d.Fields() {
				r, err := compileField(f)
				if err != nil {
					return fmt.Errorf("field %s of %s: %w", f.Name(), d.FullName(), err)
				}
				if r != nil {
					out[f] = r
				}
				if err := walk(f.Type()); err != nil {
					return err
				}
			}
		case *havro.ArraySchema:
			return walk(d.Items())
		case *havro.MapSchema:
			return walk(d.Values())
		case *havro.UnionSchema:
			for _, t := range d.Types() {
				if err := walk(t); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(s); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// ruleTargets returns the types a field's rules may apply to: the field type
// with union branches (null excluded) expanded, and, for collections, their
// item types.
func ruleTargets(t havro.Schema) (direct, items []havro.Schema) {
	var expand func(t havro.Schema, dst *[]havro.Schema)
	expand = func(t havro.Schema, dst *[]havro.Schema) {
		t = deref(t)
		if u, ok := t.(*havro.UnionSchema); ok {
			for _, b := range u.Types() {
				if deref(b).Type() != havro.Null {
					expand(b, dst)
				}
			}
			return
		}
		*dst = append(*dst, t)
	}
	expand(t, &direct)
	for _, d := range direct {
		switch c := d.(type) {
		case *havro.ArraySchema:
			expand(c.Items(), &items)
		case *havro.MapSchema:
			expand(c.Values(), &items)
		}
	}
	return direct, items
}

func isNumberType(s havro.Schema) bool {
	switch s.Type() {
	case havro.Int, havro.Long, havro.Float, havro.Double:
		return logicalType(s) == ""
	}
	return false
}

func isStringType(s havro.Schema) bool {
	return s.Type() == havro.String || s.Type() == havro.Enum
}

func isCollection(s havro.Schema) bool {
	return s.Type() == havro.Array || s.Type() == havro.Map
}

func compileField(f *havro.Field) (*fieldRules, error) {
	props := f.Props()
	if len(props) == 0 {
		return nil, nil
	}
	r := &fieldRules{minLen: -1, maxLen: -1, minItems: -1, maxItems: -1}
	declared := false
	direct, items := ruleTargets(f.Type())
	scalar := slices.Concat(direct, items)
	needs := func(rule string, fits func(havro.Schema) bool, set []havro.Schema, what string) error {
		if !slices.ContainsFunc(set, fits) {
			return fmt.Errorf("rule %q applies to %s, not to %s", rule, what, describe(f.Type()))
		}
		return nil
	}
	for _, rule := range []string{RuleMinimum, RuleMaximum, RuleExclusiveMinimum, RuleExclusiveMaximum} {
		v, ok := props[rule]
		if !ok {
			continue
		}
		x, ok := propNumber(v)
		if !ok || math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("rule %q must be a number, got %s", rule, propText(v))
		}
		if err := needs(rule, isNumberType, scalar, "numbers"); err != nil {
			return nil, err
		}
		r.bounds, declared = append(r.bounds, bound{rule: rule, limit: x}), true
	}
	for _, l := range []struct {
		rule string
		dst  *int
		fits func(havro.Schema) bool
		set  []havro.Schema
		what string
	}{
		{RuleMinLength, &r.minLen, isStringType, scalar, "strings"},
		{RuleMaxLength, &r.maxLen, isStringType, scalar, "strings"},
		{RuleMinItems, &r.minItems, isCollection, direct, "arrays and maps"},
		{RuleMaxItems, &r.maxItems, isCollection, direct, "arrays and maps"},
	} {
		v, ok := props[l.rule]
		if !ok {
			continue
		}
		x, ok := propNumber(v)
		if !ok || x < 0 || x != math.Trunc(x) || x > math.MaxInt32 {
			return nil, fmt.Errorf("rule %q must be a non-negative integer, got %s", l.rule, propText(v))
		}
		if err := needs(l.rule, l.fits, l.set, l.what); err != nil {
			return nil, err
		}
		*l.dst, declared = int(x), true
	}
	if r.minLen >= 0 && r.maxLen >= 0 && r.minLen > r.maxLen {
		return nil, fmt.Errorf("minLength %d is greater than maxLength %d", r.minLen, r.maxLen)
	}
	if r.minItems >= 0 && r.maxItems >= 0 && r.minItems > r.maxItems {
		return nil, fmt.Errorf("minItems %d is greater than maxItems %d", r.minItems, r.maxItems)
	}
	if v, ok := props[RulePattern]; ok {
		p, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("rule %q must be a string, got %s", RulePattern, propText(v))
		}
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("rule %q is not an RE2 regular expression: %w", RulePattern, err)
		}
		if err := needs(RulePattern, isStringType, scalar, "strings"); err != nil {
			return nil, err
		}
		r.pattern, declared = re, true
	}
	if v, ok := props[RuleFormat]; ok {
		p, ok := v.(string)
		if !ok || !slices.Contains(Formats, p) {
			return nil, fmt.Errorf("rule %q must be one of %s, got %s", RuleFormat, strings.Join(Formats, ", "), propText(v))
		}
		if err := needs(RuleFormat, isStringType, scalar, "strings"); err != nil {
			return nil, err
		}
		r.format, declared = p, true
	}
	if !declared {
		return nil, nil // only properties outside the vocabulary
	}
	if f.HasDefault() {
		c := ruleChecker{}
		r.check(&c, f.Type(), nativeDefault(f.Type(), f.Default()), "")
		if len(c.errs) > 0 {
			return nil, fmt.Errorf("the default breaks rule %q: %s", c.errs[0].Rule, c.errs[0].Message)
		}
	}
	return r, nil
}

func propNumber(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case float32:
		return float64(n), true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

func propText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%v", v)
	}
	return string(b)
}

// ruleSink collects rule failures.
type ruleSink interface {
	fail(path, rule, msg string, v any, showValue bool)
}

// check applies r to the native value v of a field of type t at path.
func (r *fieldRules) check(sink ruleSink, t havro.Schema, v any, path string) {
	t, v = unwrapNative(t, v)
	if v == nil {
		return
	}
	switch c := t.(type) {
	case *havro.ArraySchema:
		arr, _ := v.([]any)
		r.checkCount(sink, len(arr), v, path)
		if r.hasScalar() {
			for i, e := range arr {
				it, ev := unwrapNative(c.Items(), e)
				r.checkScalar(sink, it, ev, joinIndex(path, i))
			}
		}
		return
	case *havro.MapSchema:
		m, _ := v.(map[string]any)
		r.checkCount(sink, len(m), v, path)
		if r.hasScalar() {
			keys := make([]string, 0, len(m))
			for k := range m {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				it, ev := unwrapNative(c.Values(), m[k])
				r.checkScalar(sink, it, ev, joinKey(path, k))
			}
		}
		return
	}
	r.checkScalar(sink, t, v, path)
}

func (r *fieldRules) checkCount(sink ruleSink, n int, v any, path string) {
	if r.minItems >= 0 && n < r.minItems {
		sink.fail(path, RuleMinItems, fmt.Sprintf("must have at least %s, has %d", plural(r.minItems, "item"), n), nil, false)
	}
	if r.maxItems >= 0 && n > r.maxItems {
		sink.fail(path, RuleMaxItems, fmt.Sprintf("must have at most %s, has %d", plural(r.maxItems, "item"), n), nil, false)
	}
}

// lengthMayFail reports whether str's length in characters may break minLen or maxLen,
// judged from its length in bytes: a character takes 1 to 4 bytes. Counting the characters
// of every string took a tenth of encoding a 300-byte event.
func (r *fieldRules) lengthMayFail(str string) bool {
	return r.maxLen >= 0 && len(str) > r.maxLen || r.minLen > 0 && len(str)/4 < r.minLen
}

func (r *fieldRules) checkScalar(sink ruleSink, t havro.Schema, v any, path string) {
	if v == nil {
		return
	}
	if isNumberType(t) {
		x, ok := nativeNumber(v)
		if !ok {
			return
		}
		n, isInt := nativeInt(v)
		for _, b := range r.bounds {
			if isInt && !b.okInt(n) || !isInt && !b.ok(x) {
				sink.fail(path, b.rule, b.message(), nativeShow(v), true)
			}
		}
		return
	}
	str, ok := v.(string)
	if !ok || !isStringType(t) {
		return
	}
	if r.lengthMayFail(str) {
		n := utf8.RuneCountInString(str)
		if r.minLen >= 0 && n < r.minLen {
			sink.fail(path, RuleMinLength, fmt.Sprintf("must be at least %s long, is %d", plural(r.minLen, "character"), n), str, true)
		}
		if r.maxLen >= 0 && n > r.maxLen {
			sink.fail(path, RuleMaxLength, fmt.Sprintf("must be at most %s long, is %d", plural(r.maxLen, "character"), n), str, true)
		}
	}
	if r.pattern != nil && !r.pattern.MatchString(str) {
		sink.fail(path, RulePattern, "must match the pattern "+r.pattern.String(), str, true)
	}
	if r.format != "" && !formatOK(r.format, str) {
		sink.fail(path, RuleFormat, "must be a valid "+r.format, str, true)
	}
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

func formatOK(format, s string) bool {
	switch format {
	case "email":
		a, err := mail.ParseAddress(s)
		return err == nil && a.Name == "" && a.Address == s
	case "uuid":
		return isUUID(s)
	case "uri":
		u, err := url.Parse(s)
		return err == nil && u.Scheme != "" && (u.Host != "" || u.Opaque != "" || u.Path != "")
	}
	return false
}

func nativeNumber(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case int32:
		return float64(n), true
	case int64:
		return float64(n), true
	case float32:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

// nativeInt returns an int or long native value as an int64.
func nativeInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int:
		return int64(n), true
	case int32:
		return int64(n), true
	case int64:
		return n, true
	}
	return 0, false
}

// nativeShow turns a native number into a value appendShort renders as JSON.
func nativeShow(v any) any {
	switch n := v.(type) {
	case float32:
		return json.Number(strconv.FormatFloat(float64(n), 'g', -1, 32))
	case float64:
		return json.Number(strconv.FormatFloat(n, 'g', -1, 64))
	}
	return json.Number(fmt.Sprint(v))
}

// unwrapNative resolves a union to the branch holding v, following the
// native union shapes (see FromJSON). Null yields (t, nil).
func unwrapNative(t havro.Schema, v any) (havro.Schema, any) {
	t = deref(t)
	u, ok := t.(*havro.UnionSchema)
	if !ok {
		return t, v
	}
	if v == nil {
		return t, nil
	}
	if plainUnion(u) {
		if i := plainBranch(u, v); i >= 0 {
			return unwrapNative(u.Types()[i], v)
		}
	}
	if m, ok := v.(map[string]any); ok && len(m) == 1 {
		for k, inner := range m {
			for _, b := range u.Types() {
				if nativeBranchName(b) == k {
					return unwrapNative(b, inner)
				}
			}
		}
	}
	if nb := nullableBranch(u); nb >= 0 {
		return unwrapNative(u.Types()[nb], v)
	}
	return t, v
}

// ruleChecker checks the rules of every field of a native value, for Encode.
type ruleChecker struct {
	rules map[*havro.Field]*fieldRules
	errs  []FieldError
	depth int
}

func (c *ruleChecker) fail(path, rule, msg string, v any, showValue bool) {
	fe := FieldError{Path: path, Rule: rule, Message: msg}
	if showValue {
		fe.Value = shortJSON(v)
	}
	c.errs = append(c.errs, fe)
}

// walk checks the rules of every record field below v, a native value of s.
func (c *ruleChecker) walk(s havro.Schema, v any, path string) {
	if c.depth > MaxDepth {
		return
	}
	c.depth++
	defer func() { c.depth-- }()
	s, v = unwrapNative(s, v)
	if v == nil {
		return
	}
	switch d := s.(type) {
	case *havro.RecordSchema:
		m, ok := v.(map[string]any)
		if !ok {
			return
		}
		for _, f := range d.Fields() {
			fp := joinField(path, f.Name())
			fv := m[f.Name()]
			if r := c.rules[f]; r != nil {
				r.check(c, f.Type(), fv, fp)
			}
			c.walk(f.Type(), fv, fp)
		}
	case *havro.ArraySchema:
		arr, _ := v.([]any)
		for i, e := range arr {
			c.walk(d.Items(), e, joinIndex(path, i))
		}
	case *havro.MapSchema:
		m, _ := v.(map[string]any)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			c.walk(d.Values(), m[k], joinKey(path, k))
		}
	}
}

// checkRules checks the field rules of s against native, a value Decode of
// s's Avro returned.
func (s *Schema) checkRules(native any) error {
	if s.rules == nil {
		return nil
	}
	c := ruleChecker{rules: s.rules}
	c.walk(s.avro, native, "")
	if len(c.errs) > 0 {
		return &ValidationError{Fields: c.errs}
	}
	return nil
}

// HasRules reports whether any field of the schema declares a field rule.
func (s *Schema) HasRules() bool { return s.rules != nil }

// EncodeWithoutRules is Encode without the field rules: for re-encoding data that was
// accepted once, such as an old event moved to a newer shape, which must stay readable
// even if a rule has since become stricter. Go values hamba/avro would write as other
// values are still refused (see checkGo): an upcaster's 2^31 in an int field is an error,
// not a wrapped number. A uuid field's format is a rule, not a change: data written when
// the field was a plain string (adding the logical type is a compatible change) keeps
// its value.
func (s *Schema) EncodeWithoutRules(v any) ([]byte, error) {
	if err := s.checkGoChanges(v); err != nil {
		return nil, err
	}
	return s.encode(v)
}
