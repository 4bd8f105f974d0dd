-- A projector that knows where its checkpoint stands moves it and applies a batch in one
-- pipelined round trip: this call comes first in the pipeline, and when the checkpoint is
-- not where the projector thought (another instance moved it, or a rebuild swapped it)
-- it fails with SQLSTATE PJ001, so nothing after it runs and the batch's implicit
-- transaction rolls back. The projector then reads the checkpoint and applies the batch
-- the long way, skipping what is already applied.
CREATE FUNCTION pgjet.move_checkpoint(checkpoint_name text, from_sequence bigint, to_sequence bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE pgjet.checkpoints SET sequence = to_sequence, updated_at = now()
    WHERE name = checkpoint_name AND sequence = from_sequence;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgjet: checkpoint % is not at %', checkpoint_name, from_sequence
            USING ERRCODE = 'PJ001';
    END IF;
END
$$;
