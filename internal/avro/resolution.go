package avro

import (
	"fmt"

	havro "github.com/hamba/avro/v2"
)

// CheckResolution returns an *IncompatibleError when data written
// with writer, read with reader by schema resolution, would mean something else or fail
// to decode, where hamba/avro's compatibility check (and so Resolvable) passes. It finds:
//
//   - a value read under another logical type than it was written with: a decimal with
//     another precision or scale (12.34 written with scale 2 reads as 1.234 with scale 3;
//     the Avro specification matches decimals only when both agree), or two different
//     logical types on one underlying value (timestamp-millis read as timestamp-micros,
//     a date promoted to a timestamp-millis). hamba, like Java's Avro, compares
//     underlying types only. Adding a logical type to a plain value or dropping one stays
//     allowed: that reinterpretation is the schema author's, as with long to
//     timestamp-millis or string to uuid;
//   - a reader field that no writer field is read into and that has no default, which
//     hamba's check misses when the field's alias names a writer field another reader
//     field reads (hamba then reads the field from the bytes after the record);
//   - a reader field that takes its default, where hamba cannot decode that default: a
//     union whose first branch is an enum, record, map, fixed or logical type, say
//     ([{"type":"enum",...}, "null"] with default "B"), which fails every old event.
//
// The pairs compared are the ones resolution reads into each other; the error names the
// field by its path in reader ("a.b", "a[]" for array items, "a{}" for map values).
func CheckResolution(writer, reader *Schema) error {
	w := resolutionWalk{sc: havro.NewSchemaCompatibility(), seen: map[[2]havro.Schema]bool{}}
	if err := w.walk(reader.avro, writer.avro, ""); err != nil {
		return &IncompatibleError{Writer: writer.fullName, Reader: reader.fullName, Reason: err.Error()}
	}
	return nil
}

type resolutionWalk struct {
	sc   *havro.SchemaCompatibility
	seen map[[2]havro.Schema]bool // (reader, writer) pairs walked, for recursive types
}

// walk compares reader and writer, which resolution reads into each other, and what they
// hold, the way hamba's resolver pairs them.
func (w *resolutionWalk) walk(reader, writer havro.Schema, path string) error {
	reader, writer = deref(reader), deref(writer)
	pair := [2]havro.Schema{reader, writer}
	if w.seen[pair] {
		return nil
	}
	w.seen[pair] = true
	if wu, ok := writer.(*havro.UnionSchema); ok {
		for _, b := range wu.Types() {
			if err := w.walk(reader, b, path); err != nil {
				return err
			}
		}
		return nil
	}
	switch r := reader.(type) {
	case *havro.UnionSchema:
		for _, b := range r.Types() {
			if w.sc.Compatible(b, writer) == nil { // the branch resolution picks
				return w.walk(b, writer, path)
			}
		}
	case *havro.RecordSchema:
		wr, ok := writer.(*havro.RecordSchema)
		if !ok {
			return nil
		}
		read := map[*havro.Field]bool{}
		for _, wf := range wr.Fields() {
			if rf := readerField(r, wf.Name()); rf != nil {
				read[rf] = true
				if err := w.walk(rf.Type(), wf.Type(), joinField(path, rf.Name())); err != nil {
					return err
				}
			}
		}
		for _, rf := range r.Fields() {
			if err := defaultReadable(rf, read[rf], wr, joinField(path, rf.Name())); err != nil {
				return err
			}
		}
	case *havro.ArraySchema:
		if wa, ok := writer.(*havro.ArraySchema); ok {
			return w.walk(r.Items(), wa.Items(), path+"[]")
		}
	case *havro.MapSchema:
		if wm, ok := writer.(*havro.MapSchema); ok {
			return w.walk(r.Values(), wm.Values(), path+"{}")
		}
	default:
		return sameLogicalType(reader, writer, path)
	}
	return nil
}

// defaultReadable fails when f, a field of a reader record, is not read from writer and
// its default cannot stand in.
func defaultReadable(f *havro.Field, read bool, writer *havro.RecordSchema, path string) error {
	switch {
	case read:
		return nil
	case !f.HasDefault():
		return fmt.Errorf("field %s: no field of %s is read into it, and it has no default", path, writer.FullName())
	}
	// What hamba does with the default when it decodes data without the field.
	if _, err := api.Marshal(f.Type(), f.Default()); err != nil {
		return fmt.Errorf("field %s: hamba/avro cannot decode its default into data written without the field: %w", path, err)
	}
	return nil
}

// readerField returns the field of r that reads the writer's field name, as hamba's
// resolver finds it: the first with that name or alias.
func readerField(r *havro.RecordSchema, name string) *havro.Field {
	for _, f := range r.Fields() {
		if f.Name() == name {
			return f
		}
		for _, a := range f.Aliases() {
			if a == name {
				return f
			}
		}
	}
	return nil
}

// sameLogicalType fails when reader and writer both have a logical type and the types, or
// a decimal's precision or scale, differ.
func sameLogicalType(reader, writer havro.Schema, path string) error {
	rl, wl := logicalSchema(reader), logicalSchema(writer)
	if rl == nil || wl == nil {
		return nil
	}
	rd, rdec := rl.(*havro.DecimalLogicalSchema)
	wd, wdec := wl.(*havro.DecimalLogicalSchema)
	switch {
	case rl.Type() != wl.Type():
	case rdec && wdec && (rd.Precision() != wd.Precision() || rd.Scale() != wd.Scale()):
	default:
		return nil
	}
	if path == "" {
		path = "(root)"
	}
	return fmt.Errorf("field %s: a value written as %s would be read as %s, which means another value",
		path, describeLogical(writer, wl), describeLogical(reader, rl))
}

// logicalSchema returns the logical type of s with its parameters, or nil.
func logicalSchema(s havro.Schema) havro.LogicalSchema {
	lts, ok := s.(havro.LogicalTypeSchema)
	if !ok {
		return nil
	}
	return lts.Logical()
}

// describeLogical names s's type with its logical type: "long (timestamp-millis)",
// "bytes (decimal(10,2))".
func describeLogical(s havro.Schema, l havro.LogicalSchema) string {
	if d, ok := l.(*havro.DecimalLogicalSchema); ok {
		return fmt.Sprintf("%s (decimal(%d,%d))", s.Type(), d.Precision(), d.Scale())
	}
	return fmt.Sprintf("%s (%s)", s.Type(), l.Type())
}
