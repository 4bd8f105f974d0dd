// Package migrate owns pgjet's Postgres schema: numbered SQL migrations embedded in the
// binary, applied in order and recorded in pgjet.migrations.
//
// Every binary calls Up at start. Up holds a transaction-scoped advisory lock while it works,
// so several binaries starting at once apply each migration exactly once; a migration and
// its record commit together or not at all.
package migrate
