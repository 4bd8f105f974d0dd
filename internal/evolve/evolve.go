package evolve

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/pgjet/pgjet/internal/avro"
	"github.com/pgjet/pgjet/internal/registry"
)

// UpcastProperty is the record property by which a schema version declares that data of
// the previous version needs an upcaster to reach it: "upcast": true.
const UpcastProperty = "upcast"

// ErrMissingUpcaster: data must pass a step that requires an upcaster, and none is
// registered for it.
var ErrMissingUpcaster = errors.New("evolve: missing upcaster")

// ErrUpcast is wrapped when an upcaster fails or returns data that does not fit the next
// version's schema.
var ErrUpcast = errors.New("evolve: upcasting failed")

// Func turns the data of one version (a record as avro.Schema.Decode returns it: native Go
// values) into the next version's shape. It may modify and return its argument.
type Func func(data map[string]any) (map[string]any, error)

// Upcaster is the step of an event type from subject version FromVersion to
// FromVersion+1.
type Upcaster struct {
	// Type is the event type: the subject, the Avro full name.
	Type string
	// FromVersion is the subject version whose data Func takes; it returns data in the
	// shape of FromVersion+1.
	FromVersion int
	// Func does the step.
	Func Func
}

// Decoder decodes wire-format payloads into the newest shape of their type. It is safe
// for concurrent use.
type Decoder struct {
	reg *registry.Registry

	mu        sync.RWMutex
	upcasters map[string]map[int]Func
	versions  map[string][]registry.Version // per subject, oldest first; versions never change
	resolves  map[[2]int]bool               // (writer, reader) schema ids -> avro.CanResolve
}

// New returns a Decoder reading schemas from reg, with the given upcasters.
func New(reg *registry.Registry, upcasters ...Upcaster) (*Decoder, error) {
	d := &Decoder{reg: reg, upcasters: map[string]map[int]Func{}, versions: map[string][]registry.Version{}, resolves: map[[2]int]bool{}}
	for _, u := range upcasters {
		if err := d.Register(u); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// Register adds an upcaster. A second one for the same type and version is an error.
func (d *Decoder) Register(u Upcaster) error {
	switch {
	case u.Type == "":
		return errors.New("evolve: upcaster without a type")
	case u.FromVersion < 1:
		return fmt.Errorf("evolve: upcaster of %s from version %d: versions start at 1", u.Type, u.FromVersion)
	case u.Func == nil:
		return fmt.Errorf("evolve: upcaster of %s from version %d has no Func", u.Type, u.FromVersion)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.upcasters[u.Type]
	if m == nil {
		m = map[int]Func{}
		d.upcasters[u.Type] = m
	}
	if _, dup := m[u.FromVersion]; dup {
		return fmt.Errorf("evolve: two upcasters of %s from version %d", u.Type, u.FromVersion)
	}
	m[u.FromVersion] = u.Func
	return nil
}

func (d *Decoder) upcaster(typ string, from int) Func {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.upcasters[typ][from]
}

// Decode decodes a Confluent wire-format payload of an event of type typ into the newest
// registered version's shape: native Go values as avro.Schema.Decode returns them.
func (d *Decoder) Decode(ctx context.Context, typ string, wire []byte) (map[string]any, error) {
	v, _, err := d.decode(ctx, nil, typ, wire)
	return v, err
}

// DecodeTx is Decode reading the registry through db (a caller's open transaction, say)
// where its caches do not answer; a nil db means the registry's pool.
func (d *Decoder) DecodeTx(ctx context.Context, db registry.Querier, typ string, wire []byte) (map[string]any, error) {
	v, _, err := d.decode(ctx, db, typ, wire)
	return v, err
}

// DecodeJSON is Decode rendered as natural JSON (avro.Schema.RenderJSON of the newest
// version).
func (d *Decoder) DecodeJSON(ctx context.Context, typ string, wire []byte) ([]byte, error) {
	v, newest, err := d.decode(ctx, nil, typ, wire)
	if err != nil {
		return nil, err
	}
	return newest.RenderJSON(v)
}

// decode reads the registry through db, or its pool when db is nil.
func (d *Decoder) decode(ctx context.Context, db registry.Querier, typ string, wire []byte) (map[string]any, *avro.Schema, error) {
	id, payload, err := avro.SplitWire(wire)
	if err != nil {
		return nil, nil, err
	}
	versions, n, err := d.versionOf(ctx, db, typ, int(id))
	if err != nil {
		return nil, nil, err
	}
	newest := versions[len(versions)-1]
	// writer is the version the payload is encoded with: version n, then the version an
	// upcaster or a stop on the way produced. Invariant at step k: writer's data resolves
	// to version k.
	writer := versions[n-1]
	for k := n; k < newest.Version; k++ {
		from, next := versions[k-1], versions[k]
		up := d.upcaster(typ, k)
		if up == nil {
			if stepNeedsUpcaster(from.Schema, next.Schema) {
				return nil, nil, fmt.Errorf("%w: %s data of version %d needs an upcaster to version %d (data written with version %d)",
					ErrMissingUpcaster, typ, k, k+1, n)
			}
			// Resolution may skip version k only if the data resolves to k+1 directly.
			// Under BACKWARD, which compares each version with the previous one only, it
			// may not (a field removed and added back with another type, an alias
			// dropped): then the data stops at version k, from which k+1 resolves.
			if writer.ID != from.ID && !d.canResolve(writer, next) {
				native, err := avro.ResolveDecode(writer.Schema, from.Schema, payload)
				if err != nil {
					return nil, nil, fmt.Errorf("evolve: reading %s version %d data as version %d: %w", typ, n, k, err)
				}
				if payload, err = from.Schema.EncodeWithoutRules(native); err != nil {
					return nil, nil, fmt.Errorf("evolve: encoding %s version %d data as version %d: %w", typ, n, k, err)
				}
				writer = from
			}
			continue
		}
		native, err := avro.ResolveDecode(writer.Schema, from.Schema, payload)
		if err != nil {
			return nil, nil, fmt.Errorf("evolve: reading %s version %d data as version %d: %w", typ, n, k, err)
		}
		rec, ok := native.(map[string]any)
		if !ok {
			return nil, nil, fmt.Errorf("evolve: %s version %d data is %T, not a record", typ, k, native)
		}
		out, err := up(rec)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %s from version %d to %d: %w", ErrUpcast, typ, k, k+1, err)
		}
		if payload, err = next.Schema.EncodeWithoutRules(out); err != nil {
			return nil, nil, fmt.Errorf("%w: %s from version %d to %d: the result does not fit version %d: %w",
				ErrUpcast, typ, k, k+1, k+1, err)
		}
		writer = next
	}
	native, err := avro.ResolveDecode(writer.Schema, newest.Schema, payload)
	if err != nil {
		return nil, nil, fmt.Errorf("evolve: reading %s data as version %d: %w", typ, newest.Version, err)
	}
	rec, ok := native.(map[string]any)
	if !ok {
		return nil, nil, fmt.Errorf("evolve: %s data is %T, not a record", typ, native)
	}
	return rec, newest.Schema, nil
}

// canResolve reports whether data of writer resolves to reader, remembering the answer:
// avro caches only resolutions that succeed, and a failing one is as costly each time.
func (d *Decoder) canResolve(writer, reader registry.Version) bool {
	key := [2]int{writer.ID, reader.ID}
	d.mu.RLock()
	ok, known := d.resolves[key]
	d.mu.RUnlock()
	if known {
		return ok
	}
	ok = avro.CanResolve(writer.Schema, reader.Schema)
	d.mu.Lock()
	d.resolves[key] = ok
	d.mu.Unlock()
	return ok
}

// stepNeedsUpcaster reports whether data of from cannot reach to by schema resolution
// alone.
func stepNeedsUpcaster(from, to *avro.Schema) bool {
	if b, _ := to.RecordProp(UpcastProperty).(bool); b {
		return true
	}
	return !avro.CanResolve(from, to)
}

// versionOf returns the versions of subject typ, oldest first, and the version number
// whose schema has the global id. The list reaches at least the newest version the
// registry's cache knows.
func (d *Decoder) versionOf(ctx context.Context, db registry.Querier, typ string, id int) ([]registry.Version, int, error) {
	if db == nil {
		db = d.reg.Pool()
	}
	latest, err := d.reg.LatestCachedTx(ctx, db, typ)
	if err != nil {
		return nil, 0, fmt.Errorf("evolve: %w", err)
	}
	d.mu.RLock()
	versions := d.versions[typ]
	d.mu.RUnlock()
	for attempt := 0; ; attempt++ {
		if len(versions) >= latest.Version {
			for _, v := range versions {
				if v.ID == id {
					return versions, v.Version, nil
				}
			}
		}
		if attempt == 1 {
			return nil, 0, fmt.Errorf("evolve: schema id %d is not a version of %s", id, typ)
		}
		if versions, err = d.reg.AllTx(ctx, db, typ); err != nil {
			return nil, 0, fmt.Errorf("evolve: %w", err)
		}
		for i, v := range versions {
			if v.Version != i+1 {
				return nil, 0, fmt.Errorf("evolve: %s has no version %d", typ, i+1)
			}
		}
		d.mu.Lock()
		d.versions[typ] = versions
		d.mu.Unlock()
		latest = versions[len(versions)-1]
	}
}
