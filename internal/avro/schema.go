package avro

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"reflect"
	"sync"

	havro "github.com/hamba/avro/v2"
)

// Limits applied to every encode and decode in this package.
const (
	// MaxBytesSize is the largest bytes or string value a payload may hold.
	MaxBytesSize = 8 << 20
	// MaxItems is the largest number of array or map items the decoder
	// will allocate for in one collection.
	MaxItems = 1 << 19
	// MaxDepth is the deepest nesting of records, arrays and maps accepted
	// in Avro binary, and of objects and arrays in JSON input.
	MaxDepth = 128
)

// api is the frozen hamba configuration used for every Marshal and Unmarshal.
// Its limits make a hostile length or count fail with an error instead of a
// giant allocation; payloads are also checked by checkPayload before hamba
// sees them.
var api = apiConfig.Freeze()

var apiConfig = havro.Config{
	MaxByteSliceSize:  MaxBytesSize,
	MaxSliceAllocSize: MaxItems,
}

// Schema is a parsed event schema: an Avro record. It is immutable and safe
// for concurrent use.
type Schema struct {
	avro        havro.Schema
	canonical   string
	fingerprint [32]byte
	fullName    string
	rules       map[*havro.Field]*fieldRules // nil: no field rules
	binaryRules bool                         // the rules can be checked on Avro binary; see binrules.go
	goChecks    bool                         // Encode checks Go values before hamba; see gocheck.go
	wall        *wallClocks                  // nil: no local-timestamp fields; see wallclock.go

	mu       sync.Mutex
	resolved map[[32]byte]resolution // by writer fingerprint, see ResolveDecode
}

// resolution is a schema resolved from a writer's into a reader's, with the hamba API
// that decodes with it. Each resolution has its own: hamba caches decoders under a key
// that leaves out which fields of a resolved record are skipped and which take their
// defaults, so with one shared API, reading a writer's data with a reader that skips a
// field could reuse the decoder of another reader of the same writer that reads it (or
// the other way round), and drop or misread the field.
type resolution struct {
	schema havro.Schema
	api    havro.API
}

// Parse parses the Avro schema text of an event type. The top level must be a
// record. Each call uses a fresh schema cache, so two versions of the same
// record name never interfere with each other. New schema texts from outside
// go through CheckNesting first, and CheckDefaults after.
func Parse(text string) (*Schema, error) {
	s, err := parseHamba(text)
	if err != nil {
		return nil, fmt.Errorf("avro: parsing schema: %w", err)
	}
	rec, ok := s.(*havro.RecordSchema)
	if !ok {
		return nil, fmt.Errorf("avro: parsing schema: top level is %s, an event schema must be a record", s.Type())
	}
	rules, err := compileRules(s)
	if err != nil {
		return nil, fmt.Errorf("avro: parsing schema: field rules: %w", err)
	}
	canonical := s.String()
	return &Schema{
		rules:       rules,
		binaryRules: binaryRulesApply(rec, rules),
		goChecks:    needsGoCheck(rec),
		wall:        newWallClocks(s),
		avro:        s,
		canonical:   canonical,
		fingerprint: sha256.Sum256([]byte(canonical)),
		fullName:    rec.FullName(),
	}, nil
}

// parseHamba parses text with a fresh schema cache. hamba/avro panics on some malformed
// schemas instead of failing (a field of an empty union type, `[]`, with a default indexes
// the union's first branch), and schema text comes from outside, so a panic becomes an error.
func parseHamba(text string) (s havro.Schema, err error) {
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("malformed in a way the parser does not check, such as a default for an empty union (%v)", r)
		}
	}()
	return havro.ParseWithCache(text, "", &havro.SchemaCache{})
}

// CheckNesting fails when schema text nests JSON objects and arrays deeper than MaxDepth;
// it only counts brackets outside strings, the parser checks the rest. The registry runs it
// on every schema it is given, before parsing: checking compatibility costs about the cube
// of the nesting depth in hamba/avro (a 50 KB schema 2,000 arrays deep took 50 s), and no
// event needs it (a record takes three levels). Parse does not, so that a schema stored
// before the check still loads.
func CheckNesting(text string) error {
	depth, inString := 0, false
	for i := 0; i < len(text); i++ {
		switch c := text[i]; {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '{' || c == '[':
			if depth++; depth > MaxDepth {
				return fmt.Errorf("nesting deeper than %d at offset %d", MaxDepth, i)
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return nil
}

// Avro returns the underlying hamba schema, for schema compatibility checks.
func (s *Schema) Avro() havro.Schema { return s.avro }

// Canonical returns the schema's canonical form as produced by hamba/avro:
// Parsing Canonical Form that keeps logical type attributes. Two texts that
// differ only in formatting, docs or field order of attributes have the same
// canonical form.
func (s *Schema) Canonical() string { return s.canonical }

// Fingerprint returns the SHA-256 of Canonical().
func (s *Schema) Fingerprint() [32]byte { return s.fingerprint }

// FullName returns the record's full name, namespace included
// ("shop.order.OrderPlaced").
func (s *Schema) FullName() string { return s.fullName }

// String returns the canonical form.
func (s *Schema) String() string { return s.canonical }

// Encode marshals a Go value to Avro binary: a struct with `avro` tags, a
// pointer to one, or a map[string]any holding the native values that FromJSON
// and Decode produce. Values hamba/avro would not write as given fail with
// *ValidationError, as in FromJSON: a Go int beyond 32 bits for an int, a
// non-UUID string for a uuid, a duration outside a day for a time-millis or
// time-micros, a date before 1970 that is not midnight UTC, a timestamp
// beyond 64 bits of its unit, a *big.Rat with more fractional digits than
// the decimal's scale. Other type mismatches are hamba's errors. Field rules
// (see RuleMinimum) are checked too: a value that breaks one returns *ValidationError. The result is guaranteed to be
// within Decode's limits (sizes, item counts, depth): what Encode returns
// can always be decoded again.
func (s *Schema) Encode(v any) ([]byte, error) { return s.appendChecked(nil, v) }

// EncodeWire is Encode in the Confluent wire format (see AppendWire): the magic byte and
// schemaID, then the Avro, in one allocation.
func (s *Schema) EncodeWire(schemaID uint32, v any) ([]byte, error) {
	return s.appendChecked(wireHeader(schemaID), v)
}

// wireHeader returns the wire format's header for schemaID, which EncodeWire and
// EncodeJSONWire put before the Avro.
func wireHeader(schemaID uint32) []byte {
	return AppendWire(make([]byte, 0, WireHeaderSize), schemaID, nil)
}

// appendChecked returns prefix followed by v's Avro, its field rules checked.
func (s *Schema) appendChecked(prefix []byte, v any) ([]byte, error) {
	if err := s.checkGo(v); err != nil {
		return nil, err
	}
	b, err := s.appendEncoded(prefix, v)
	if err != nil || s.rules == nil {
		return b, err
	}
	// Rules are checked on the Avro, whatever Go value v was.
	payload := b[len(prefix):]
	if s.binaryRules {
		if err := s.checkRulesBinary(payload); err != nil {
			return nil, err
		}
		return b, nil
	}
	native, err := s.Decode(payload)
	if err != nil {
		return nil, fmt.Errorf("avro: encoding %s: %w", s.fullName, err)
	}
	if err := s.checkRules(native); err != nil {
		return nil, err
	}
	return b, nil
}

// encode is Encode without the field rules.
func (s *Schema) encode(v any) ([]byte, error) { return s.appendEncoded(nil, v) }

// writers are hamba writers for appendEncoded; its result is a copy, so they are reused.
var writers = sync.Pool{New: func() any { return havro.NewWriter(nil, 1024, havro.WithWriterConfig(api)) }}

// appendEncoded returns a new slice holding prefix followed by v's Avro, without the field
// rules. Writing the prefix first saves copying the Avro after it (the wire format's
// header: see EncodeWire).
func (s *Schema) appendEncoded(prefix []byte, v any) ([]byte, error) {
	w := writers.Get().(*havro.Writer)
	w.Reset(nil)
	_, _ = w.Write(prefix) // appends to the buffer; without an io.Writer it cannot fail
	if s.wall != nil {
		v = s.wall.wire(s.avro, v)
	}
	w.WriteVal(s.avro, v)
	err := w.Error
	var b []byte
	if err == nil {
		b = bytes.Clone(w.Buffer())
	}
	w.Error = nil
	writers.Put(w)
	if err != nil {
		return nil, fmt.Errorf("avro: encoding %s: %w", s.fullName, err)
	}
	if err := checkEncoded(s.avro, b[len(prefix):]); err != nil {
		return nil, fmt.Errorf("avro: encoding %s: the result would not decode: %w", s.fullName, err)
	}
	return b, nil
}

// deref follows named-type references.
func deref(s havro.Schema) havro.Schema {
	for {
		r, ok := s.(*havro.RefSchema)
		if !ok {
			return s
		}
		s = r.Schema()
	}
}

// logicalType returns the logical type of s, or "".
func logicalType(s havro.Schema) havro.LogicalType {
	lts, ok := s.(havro.LogicalTypeSchema)
	if !ok {
		return ""
	}
	ls := lts.Logical()
	if ls == nil {
		return ""
	}
	return ls.Type()
}

// nativeBranchName is the key hamba uses for a union branch in a native
// map[string]any union value: the full name of a named type, else the type
// name followed by "." and the logical type if any ("long.timestamp-millis").
func nativeBranchName(s havro.Schema) string {
	s = deref(s)
	if n, ok := s.(havro.NamedSchema); ok {
		return n.FullName()
	}
	name := string(s.Type())
	if lt := logicalType(s); lt != "" {
		name += "." + string(lt)
	}
	return name
}

// jsonBranchName is the key DecodeJSON writes for a union branch: the Avro
// name (full name of a named type, else the type name), unless another branch
// of the same union shares it, in which case the native name.
func jsonBranchName(u *havro.UnionSchema, idx int) string {
	b := deref(u.Types()[idx])
	name := avroName(b)
	for i, o := range u.Types() {
		if i != idx && avroName(deref(o)) == name {
			return nativeBranchName(b)
		}
	}
	return name
}

func avroName(s havro.Schema) string {
	if n, ok := s.(havro.NamedSchema); ok {
		return n.FullName()
	}
	return string(s.Type())
}

// nullableBranch returns the non-null branch of a two-branch union with a
// null branch, or -1.
func nullableBranch(u *havro.UnionSchema) int {
	if !u.Nullable() {
		return -1
	}
	_, typ := u.Indices()
	return typ
}

// Native union values follow hamba's generic decoding, so that FromJSON and
// Decode agree: when hamba's type resolver knows every branch of a union by
// name (primitives and their logical types, as in ["null", "string"]), a
// value is the plain native value; otherwise it is map[string]any holding
// one entry keyed by nativeBranchName. Null is nil either way.

// resolutionName is the name hamba's type resolver looks a branch up by.
func resolutionName(s havro.Schema) string {
	name := nativeBranchName(s)
	switch d := deref(s).(type) {
	case *havro.MapSchema:
		name += ":" + nativeBranchName(d.Values())
	case *havro.ArraySchema:
		name += ":" + nativeBranchName(d.Items())
	}
	return name
}

// plainUnion reports whether hamba decodes u's values unwrapped.
func plainUnion(u *havro.UnionSchema) bool {
	for _, t := range u.Types() {
		if _, err := api.TypeOf(resolutionName(t)); err != nil {
			return false
		}
	}
	return true
}

// plainBranch returns the branch of a plain union whose native Go type is
// that of v, or -1. When several branches share a Go type (a date and a
// timestamp, say) the first wins, as in hamba's encoder.
func plainBranch(u *havro.UnionSchema, v any) int {
	vt := reflect.TypeOf(v)
	for i, t := range u.Types() {
		if deref(t).Type() == havro.Null {
			continue
		}
		if typ, err := api.TypeOf(resolutionName(t)); err == nil && typ.Type1() == vt {
			return i
		}
	}
	return -1
}

// unionNative returns the native value of branch idx of u holding native.
// Branches whose Go type another branch shares are always wrapped, so that
// hamba's encoder picks the right one.
func unionNative(u *havro.UnionSchema, idx int, native any) any {
	b := u.Types()[idx]
	if deref(b).Type() == havro.Null {
		return nil
	}
	if plainUnion(u) && plainBranch(u, native) == idx {
		return native
	}
	return map[string]any{nativeBranchName(b): native}
}

// RecordProp returns a custom property of the top-level record ("upcast", say), or nil.
func (s *Schema) RecordProp(name string) any {
	return s.avro.(*havro.RecordSchema).Prop(name)
}

// CanResolve reports whether data written with writer can be read with reader by Avro
// schema resolution (see ResolveDecode).
func CanResolve(writer, reader *Schema) bool { return Resolvable(writer, reader) == nil }

// Resolvable returns nil when ResolveDecode can read data written with writer into reader,
// else an *IncompatibleError that says why. It runs the same checks as
// ResolveDecode: the record names, hamba/avro's compatibility check, and building the
// resolved schema, which fails for some pairs the compatibility check passes (a reader
// field whose alias names a writer field that another reader field also reads, a writer
// union that resolves to two equal branches), and CheckResolution.
func Resolvable(writer, reader *Schema) error {
	_, err := reader.resolvedFrom(writer)
	return err
}
