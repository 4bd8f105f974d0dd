package avro

import havro "github.com/hamba/avro/v2"

// reshape turns v, decoded by hamba with resolved (a schema resolved into reader, see
// ResolveDecode), into the native value of reader (see unionNative). hamba decodes a
// value with the shape of the resolved schema, which is not always reader's: where the
// writer has a plain type and the reader a union, resolution keeps only the reader's
// branch, so a record made optional ("A" to ["null", "A"]) would come back as the bare
// record where reader's own data has {"t.A": record}; a writer union whose branches hamba
// returns unwrapped (["null", "string"]) read into a union it wraps (["null", "string",
// "A"]) likewise. reshape changes v's maps and slices in place.
func reshape(reader, resolved havro.Schema, v any) any {
	reader, resolved = deref(reader), deref(resolved)
	if v == nil {
		return nil
	}
	if ru, ok := resolved.(*havro.UnionSchema); ok {
		idx, inner := unionValue(ru, v)
		if idx < 0 {
			return v
		}
		resolved, v = deref(ru.Types()[idx]), inner
		if v == nil {
			return nil
		}
	}
	switch r := reader.(type) {
	case *havro.UnionSchema:
		for i, b := range r.Types() {
			if nativeBranchName(b) == nativeBranchName(resolved) {
				return unionNative(r, i, reshape(b, resolved, v))
			}
		}
	case *havro.RecordSchema:
		m, ok := v.(map[string]any)
		rr, okr := resolved.(*havro.RecordSchema)
		if !ok || !okr {
			return v
		}
		for _, f := range rr.Fields() {
			if x, ok := m[f.Name()]; ok {
				if rf := fieldNamed(r, f.Name()); rf != nil {
					m[f.Name()] = reshape(rf.Type(), f.Type(), x)
				}
			}
		}
	case *havro.ArraySchema:
		a, ok := v.([]any)
		ra, okr := resolved.(*havro.ArraySchema)
		if !ok || !okr {
			return v
		}
		for i, x := range a {
			a[i] = reshape(r.Items(), ra.Items(), x)
		}
	case *havro.MapSchema:
		m, ok := v.(map[string]any)
		rm, okr := resolved.(*havro.MapSchema)
		if !ok || !okr {
			return v
		}
		for k, x := range m {
			m[k] = reshape(r.Values(), rm.Values(), x)
		}
	}
	return v
}

// unionValue returns the branch of u that hamba decoded v with, and the branch's value,
// or -1.
func unionValue(u *havro.UnionSchema, v any) (int, any) {
	if plainUnion(u) {
		return plainBranch(u, v), v
	}
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		return -1, v
	}
	for name, x := range m {
		for i, t := range u.Types() {
			if nativeBranchName(t) == name {
				return i, x
			}
		}
	}
	return -1, v
}

// fieldNamed returns the field of r with the name, or nil.
func fieldNamed(r *havro.RecordSchema, name string) *havro.Field {
	for _, f := range r.Fields() {
		if f.Name() == name {
			return f
		}
	}
	return nil
}
