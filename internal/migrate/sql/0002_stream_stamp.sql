-- A stream's events must come out of the all-events read (ordered by tx_id, position) in
-- version order. tx_id alone does not give that: a transaction gets its id at its first
-- write, so one that wrote elsewhere first and then appended version 5 of a stream, after
-- another transaction had committed version 4, carries the lower id. Each append therefore
-- stamps its events with greatest(own transaction id, the stream's last stamp), kept here.
-- The stamp is never below the writer's own id, so a reader that stops at the oldest
-- running transaction still never skips a late commit.
ALTER TABLE pgjet.streams ADD COLUMN last_tx_id xid8;

UPDATE pgjet.streams s SET last_tx_id = (
    SELECT e.tx_id FROM pgjet.events e WHERE e.stream_id = s.stream_id ORDER BY e.tx_id DESC LIMIT 1);
