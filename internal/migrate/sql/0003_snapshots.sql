-- Aggregate snapshots: an aggregate's state folded from the first events of a stream, so a
-- load reads the snapshot and only the events after it. A snapshot is a cache, never the
-- truth: a loader uses it only when schema_version is its own, data decodes, and the
-- stream's event at `version` still has the id `event_id` (which rejects a snapshot of a
-- stream that was deleted and recreated). One row per stream and aggregate type, so several
-- aggregate definitions can fold one stream.
CREATE TABLE pgjet.snapshots (
    stream_id      text        NOT NULL,
    aggregate_type text        NOT NULL,
    schema_version integer     NOT NULL,
    version        bigint      NOT NULL CHECK (version > 0),
    event_id       uuid        NOT NULL,
    data           bytea       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, aggregate_type)
);
