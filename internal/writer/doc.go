// Package writer owns the writer service's append and read APIs over a *pgjet.Store, for
// clients that speak HTTP or NATS but not Postgres.
//
// NewHandler serves HTTP: POST /streams/{stream} appends events given as natural JSON,
// GET /streams/{stream} reads them back as natural JSON. NATSService serves the same append
// as NATS request-reply on a queue group, so any number of writers share the load. Both
// decode requests with one strict decoder and map errors to statuses and bodies with one
// function, so a request gets the same answer, error code and status over either transport.
// docs/api.md is the reference for clients.
//
// Neither API adds semantics of its own: optimistic concurrency, idempotent retries by event
// id, validation against the newest registered schema and the outbox row for the relay are
// the store's.
package writer
