// Package registry owns the schema registry: Avro schemas stored in Postgres under subjects
// (subject = the event type's Avro full name), with global ids, canonical-form dedup,
// versions per subject and compatibility levels with Confluent's meanings.
//
// Lookups by id are cached for the life of the process (ids are immutable). Lookups of a
// subject's latest version go to Postgres unless the caller accepts a bounded staleness
// (LatestCached), so a version registered by another process is seen.
package registry
