// Package registry owns the schema registry: Avro schemas stored in Postgres under subjects
// (subject = the event type's Avro full name), with global ids, dedup by schema identity,
// versions per subject and compatibility levels with Confluent's meanings.
//
// A schema's identity ignores formatting, attribute order and how names are written, but
// keeps everything schema resolution depends on (defaults, aliases, ...); the text stored
// is the one first registered, verbatim. See Registry.Register.
//
// Lookups by id are cached for the life of the process (ids are immutable). Lookups of a
// subject's latest version go to Postgres unless the caller accepts a bounded staleness
// (LatestCached), so a version registered by another process is seen.
//
// NewHandler serves the registry over HTTP with the subset of the Confluent Schema
// Registry API that client libraries call, so Confluent serializers and registry clients
// in any language use it unchanged; docs/registry.md describes it.
package registry
