// Package outbox owns the pgjet.outbox table's read side: which partition a stream's rows go
// to, how a relay claims partitions, and how it reads and removes published rows.
//
// # Why nothing is skipped
//
// Outbox rows are deleted only after JetStream acknowledged them, and a relay reads a
// partition's remaining rows in position order every time: there is no cursor, so a
// transaction that commits late simply shows up in a later read. Per-stream order holds
// because an append locks its stream's row in pgjet.streams before it takes positions, so a
// stream's events get increasing positions and commit in version order: when version n+1 is
// visible, version n is visible too (or already published and deleted).
package outbox
