package pgjet

import "github.com/pgjet/pgjet/internal/evolve"

// Upcaster moves the data of one version of an event type to the next version's shape, for
// changes Avro schema resolution cannot express (splitting a field, changing a meaning).
//
// Versions are the registry subject's version numbers (the subject is the type's Avro full
// name). Func receives data in the shape of version FromVersion, as native Go values
// (records are map[string]any; timestamps time.Time; see Decode), and returns it in the
// shape of FromVersion+1; its result is checked against that version's schema.
//
// Decoding data written with version n into the newest version L runs every upcaster
// registered for n..L-1 in order, with schema resolution in between (through each version
// where the data does not resolve to a later one directly), so chains compose. A
// step needs an upcaster when the newer version's schema declares "upcast": true at its
// top level, or when schema resolution cannot read the older data; decoding data that
// must pass such a step without an upcaster fails with ErrMissingUpcaster.
type Upcaster = evolve.Upcaster

// UpcastFunc is the function of an Upcaster.
type UpcastFunc = evolve.Func

// ErrMissingUpcaster: an event must pass a version step that requires an upcaster, and
// none is registered for it.
var ErrMissingUpcaster = evolve.ErrMissingUpcaster

// ErrUpcast: an upcaster failed, or returned data that does not fit the next version.
var ErrUpcast = evolve.ErrUpcast

// Upcast registers fn as the upcaster of typ from subject version fromVersion to
// fromVersion+1 (see Upcaster). It is safe to call while the store is in use; registering a
// second upcaster for the same step is an error.
func (s *Store) Upcast(typ string, fromVersion int, fn UpcastFunc) error {
	return s.decoder.Register(Upcaster{Type: typ, FromVersion: fromVersion, Func: fn})
}
