package pgjet

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/pgjet/pgjet/internal/avro"
	"github.com/pgjet/pgjet/internal/evolve"
)

// Hook is a domain check of one event type, run in the append path after the event passed
// its schema and field rules: "shipped_at is after placed_at", "no payment on a cancelled
// order". It returns the failing fields, with paths relative to the event's data
// ("shipped_at") and a Rule naming the check in one stable word ("hook" if empty; it is a
// metrics label, so never put values in it); the append then fails with a *ValidationError listing them with every
// other failure, and writes nothing. A non-nil error (the database is down, say) fails the
// append with that error instead.
//
// Hooks run before the append's transaction, after every event of the append was
// validated and encoded, in event order. HookEvent.StreamVersion is the stream's version
// read at that moment (inside the caller's transaction for AppendTx). With an exact
// expected version the append commits only if the stream is still at that version, so a
// hook's view of the stream is exactly what the events follow; with Any or StreamExists
// another append may slip in between, so hooks that depend on the stream's history need an
// exact expectation to be sound.
type Hook func(ctx context.Context, ev HookEvent) ([]FieldError, error)

// HookEvent is the event a Hook checks.
type HookEvent struct {
	// Store is the store appended to. A hook reads and decodes the stream with
	// HookEvent.ReadStream and HookEvent.Decode, which see what StreamVersion saw. The
	// Store's own reads go through its pool, also under AppendTx: outside the caller's
	// transaction, so they miss the events that transaction appended before, and each
	// takes a second pool connection while the caller holds one.
	Store *Store
	// StreamID is the stream appended to.
	StreamID string
	// StreamVersion is the stream's version before the append: 0 when it does not exist.
	StreamVersion int64
	// Index is the event's place in the append (0 for the first); the event will have
	// version StreamVersion+Index+1.
	Index int
	// Type is the event type.
	Type string
	// Data is the event's data as encoded, in native Go values (records map[string]any,
	// timestamps time.Time, longs int64; see Decode).
	Data map[string]any
	// Metadata is the event's metadata.
	Metadata map[string]string
	// Earlier holds the data of the append's events before this one, in order.
	Earlier []HookEvent

	tx querier // the caller's transaction under AppendTx, else nil
}

// ReadStream reads a stream as Store.ReadStream does, in the append's view: under AppendTx
// inside the caller's transaction, so it sees the events that transaction appended before
// (as StreamVersion does) and needs no second connection; under Append through the store's
// pool and read cache. Under AppendTx a hook must call it from its own goroutine only: a
// transaction runs one query at a time.
func (ev HookEvent) ReadStream(ctx context.Context, streamID string, dir Direction, from int64, limit int) ([]RecordedEvent, error) {
	return ev.Store.readStream(ctx, ev.tx, streamID, dir, from, limit)
}

// Decode is Store.Decode in the append's view: under AppendTx, what the registry's caches
// do not hold is read inside the caller's transaction, not through a second connection.
func (ev HookEvent) Decode(ctx context.Context, e RecordedEvent) (map[string]any, error) {
	v, err := ev.Store.decoder.DecodeTx(ctx, ev.tx, e.Type, e.Data)
	if err != nil {
		return nil, fmt.Errorf("decoding event %s: %w", e.ID, err)
	}
	return v, nil
}

// hookSet holds the hooks per event type.
type hookSet struct {
	mu    sync.RWMutex
	hooks map[string][]Hook
}

func newHookSet(hooks map[string][]Hook) (*hookSet, error) {
	h := &hookSet{hooks: map[string][]Hook{}}
	for typ, fns := range hooks {
		for _, fn := range fns {
			if err := h.add(typ, fn); err != nil {
				return nil, err
			}
		}
	}
	return h, nil
}

func (h *hookSet) add(typ string, fn Hook) error {
	if typ == "" || fn == nil {
		return errors.New("pgjet: a hook needs a type and a function")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hooks[typ] = append(h.hooks[typ], fn)
	return nil
}

func (h *hookSet) of(typ string) []Hook {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.hooks[typ]
}

// Hook registers fn to check every appended event of type typ (see Hook). It is safe to
// call while the store is in use.
func (s *Store) Hook(typ string, fn Hook) error { return s.hooks.add(typ, fn) }

// runHooks runs the hooks of a prepared append. db reads the stream's version: the pool,
// or the caller's transaction for AppendTx.
//
// A retry of an append that is stored already is not checked again: its events are in the
// stream the hooks would look at, so a hook could refuse what it accepted the first time.
// runHooks returns the original result then (done), also when the original commits while
// the hooks run and they refuse the retry.
func (s *Store) runHooks(ctx context.Context, db querier, p *prepared, events []EventData) (res AppendResult, done bool, err error) {
	hooked := false
	for _, typ := range p.types {
		if len(s.hooks.of(typ)) > 0 {
			hooked = true
			break
		}
	}
	if !hooked {
		return AppendResult{}, false, nil
	}
	if p.clientIDs {
		if res, found, err := p.existing(ctx, db); err != nil || found {
			return res, found, err
		}
	}
	err = s.checkHooks(ctx, db, p, events)
	if p.clientIDs && errors.Is(err, ErrValidation) {
		// The original may have committed between the lookup above and the hooks, which
		// then saw its events. Only a refusal needs the second look.
		if res, found, lerr := p.existing(ctx, db); lerr == nil && found {
			return res, true, nil
		}
	}
	return AppendResult{}, false, err
}

// checkHooks runs the hooks of the append's event types on its events.
func (s *Store) checkHooks(ctx context.Context, db querier, p *prepared, events []EventData) error {
	var tx querier
	if _, ok := db.(pgx.Tx); ok {
		tx = db
	}
	version, err := streamVersion(ctx, db, p.stream)
	if err != nil {
		return fmt.Errorf("reading the version of %q for hooks: %w", p.stream, err)
	}
	var (
		invalid ValidationError
		earlier []HookEvent
	)
	for i, typ := range p.types {
		schema, err := s.registry.SchemaByIDTx(ctx, db, int(p.schemaIDs[i]))
		if err != nil {
			return err
		}
		_, payload, err := avro.SplitWire(p.data[i])
		if err != nil {
			return err
		}
		native, err := schema.Decode(payload)
		if err != nil {
			return fmt.Errorf("events[%d]: decoding for hooks: %w", i, err)
		}
		data, _ := native.(map[string]any)
		ev := HookEvent{
			Store: s, StreamID: p.stream, StreamVersion: version, Index: i, Type: typ,
			Data: data, Metadata: events[i].Metadata, Earlier: earlier, tx: tx,
		}
		for _, fn := range s.hooks.of(typ) {
			fails, err := fn(ctx, ev)
			if err != nil {
				return fmt.Errorf("events[%d]: hook of %s: %w", i, typ, err)
			}
			at := fmt.Sprintf("events[%d].data", i)
			for _, f := range fails {
				f.Path = joinPath(at, f.Path)
				if f.Rule == "" {
					f.Rule = "hook"
				}
				invalid.Fields = append(invalid.Fields, f)
			}
		}
		earlier = append(earlier[:len(earlier):len(earlier)], ev)
	}
	if len(invalid.Fields) > 0 {
		return &invalid
	}
	return nil
}

// initEvolution builds the store's decoder and hooks from its Config.
func (s *Store) initEvolution() error {
	d, err := evolve.New(s.registry, s.cfg.Upcasters...)
	if err != nil {
		return fmt.Errorf("pgjet: Config.Upcasters: %w", err)
	}
	h, err := newHookSet(s.cfg.Hooks)
	if err != nil {
		return fmt.Errorf("pgjet: Config.Hooks: %w", err)
	}
	s.decoder, s.hooks = d, h
	return nil
}
