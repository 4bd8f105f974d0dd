-- A checkpoint names a JetStream sequence, and a sequence names an event only in the
-- stream that numbered it: a stream re-created and re-published from Postgres
-- (verify -repair) numbers the same events differently. So a checkpoint now also records
-- the id (ce-id) of the event at its sequence, and a projector placing its consumer checks
-- that the stream still has that event there. event_sequence is the sequence the id
-- belongs to: binaries before this migration move sequence alone, and an id whose
-- event_sequence is not the checkpoint's sequence says nothing.
ALTER TABLE pgjet.checkpoints
    ADD COLUMN IF NOT EXISTS event_id text,
    ADD COLUMN IF NOT EXISTS event_sequence bigint;

-- move_checkpoint of migration 5, also recording the id of the event at to_sequence.
CREATE FUNCTION pgjet.move_checkpoint(checkpoint_name text, from_sequence bigint, to_sequence bigint, to_event_id text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE pgjet.checkpoints
    SET sequence = to_sequence, event_id = to_event_id, event_sequence = to_sequence, updated_at = now()
    WHERE name = checkpoint_name AND sequence = from_sequence;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgjet: checkpoint % is not at %', checkpoint_name, from_sequence
            USING ERRCODE = 'PJ001';
    END IF;
END
$$;
