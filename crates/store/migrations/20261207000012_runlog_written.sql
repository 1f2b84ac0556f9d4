-- What the workers wrote of the run log themselves (services/behavior-worker/src/runlog.rs).
--
-- A worker writes the records it published to PostgreSQL itself, batched, after the reply: it
-- holds them already, so they need not be read back through nats-server. Each batch notes here,
-- in the same transaction as its records, the stream sequences it wrote, as ranges
-- (`ranges` = [from1, to1, from2, to2, ...], inclusive). The run log's sweeper (the writer of
-- `runlog_checkpoints`) reads from the stream only the sequences no row covers (a worker died,
-- or PostgreSQL was down), moves the checkpoint past them, and deletes the rows it has passed.
CREATE TABLE IF NOT EXISTS runlog_written (
    stream             TEXT NOT NULL,
    stream_created_ns  BIGINT NOT NULL,
    -- The highest of `ranges`: the sweeper reads the rows after its checkpoint and deletes those
    -- it has passed.
    last_seq           BIGINT NOT NULL,
    ranges             BIGINT[] NOT NULL,
    written_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS runlog_written_by_stream ON runlog_written (stream, last_seq);
