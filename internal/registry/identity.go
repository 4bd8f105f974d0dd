package registry

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"

	"github.com/pgjet/pgjet/internal/avro"
)

// parseSchema parses an event schema and computes its identity: the SHA-256 of hamba's
// full JSON form of the parsed schema. That form is compact, writes attributes in a fixed
// order and names in full, and keeps everything schema resolution depends on (defaults,
// aliases, logical types, order, custom properties) as well as docs. It is what
// pgjet.schemas.fingerprint holds.
//
// The Parsing Canonical Form (avro.Schema.Canonical) is not used for identity on purpose:
// it drops defaults and aliases, so two schemas that resolve differently would share an
// id, and a default added to make a later change compatible would be ignored as "already
// registered".
//
// The full form is only a key: it is never stored or parsed again (hamba writes bytes and
// fixed defaults in a form that does not parse back).
func parseSchema(text string) (*avro.Schema, [32]byte, error) {
	if err := avro.CheckNesting(text); err != nil {
		return nil, [32]byte{}, fmt.Errorf("%w: %v", ErrInvalidSchema, err)
	}
	s, err := avro.Parse(text)
	if err != nil {
		return nil, [32]byte{}, fmt.Errorf("%w: %v", ErrInvalidSchema, err)
	}
	if err := avro.CheckDefaults(text); err != nil {
		return nil, [32]byte{}, fmt.Errorf("%w: %v", ErrInvalidSchema, err)
	}
	full, err := json.Marshal(s.Avro())
	if err != nil {
		return nil, [32]byte{}, fmt.Errorf("%w: %v", ErrInvalidSchema, err)
	}
	return s, sha256.Sum256(full), nil
}
