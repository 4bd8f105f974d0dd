// Package verify checks the JetStream events stream against Postgres, the source of truth,
// and repairs what JetStream lost by re-publishing it from Postgres.
//
// Check reads every event of pgjet.events and every message of the stream and reports
// events missing from JetStream, messages repeating an event id, messages out of stream
// order, and messages with no committed event behind them. Events still in the outbox are
// pending, not missing: the relay has yet to publish them; but one whose stream already has
// a later version in JetStream is out of order, as the relay will store it behind that
// version. A message without a committed event takes no part in the other checks, and
// messages on subjects outside the events' prefix are only counted.
//
// Repair re-publishes missing events with the relay's message builder
// ([relay.Message]), so a repaired event carries the same subject, payload and headers as
// the original (except traceparent, which only the outbox row kept), and HeaderRepaired,
// in position order, one at a time, stopping at the first failure. It publishes no event
// JetStream holds, and keeps one copy of each when it runs more than once: see [Repair].
// JetStream appends repaired messages at the end of the stream: they restore completeness,
// not position. Check lists them as repaired, not as out of order: nothing better can be
// done without rewriting the stream. A consumer that skips versions at or below the last
// one it handled (the dedupe the docs ask for) skips a repaired event that comes behind a
// later version of its stream; read models built that way are rebuilt after such a repair.
//
// With a stream retention limit (MaxAge, MaxBytes), events JetStream dropped on purpose are
// reported missing too; use Config.FromPosition to check only newer events.
package verify
