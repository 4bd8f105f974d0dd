// Package evolve reads events of any registered version of their type in the type's newest
// shape: Avro schema resolution from the writer schema (found by the id in the Confluent
// wire-format payload) to the newest registered version, plus registered upcasters, Go
// functions for the steps resolution cannot express (splitting a field, changing its
// meaning).
//
// Versions are the registry subject's version numbers (subject = the type's Avro full
// name). An upcaster registered for version k takes data in version k's shape and returns
// it in version k+1's shape. Decoding data written with version n to the newest version L
// goes through every upcaster registered for k in n..L-1, in order; Avro resolution
// carries the data between them, straight from one version to a later one where it
// resolves, else version by version (under BACKWARD only neighbouring versions are
// checked, so version n's data may not resolve to version n+2 directly). A step k -> k+1 requires an upcaster when version k+1's
// schema says so with the record property "upcast": true, or when Avro cannot resolve
// version k's data with version k+1's schema; without one, decoding such data fails with
// ErrMissingUpcaster naming the step. An upcaster's output is encoded with version k+1's
// schema before decoding goes on, so a wrong output fails loudly instead of travelling on.
//
// The store (pgjet.Store.Decode), the writer's read API and the projector all decode
// through a Decoder, so every reader sees the same shape.
package evolve
