-- The run log's writer (services/behavior-worker/src/runlog.rs, issue 11).
--
-- Where it has got to: every record of the JetStream stream `stream` up to `last_seq` is in
-- PostgreSQL. Written in the same transaction as the records, so a record is written once even
-- when a writer dies between its commit and anything it tells NATS. `stream_created_ns` is the
-- stream's creation time: a stream deleted and made again starts its sequences anew, and the
-- checkpoint of the old one must not skip the new one's records.
CREATE TABLE IF NOT EXISTS runlog_checkpoints (
    stream             TEXT PRIMARY KEY,
    stream_created_ns  BIGINT NOT NULL,
    last_seq           BIGINT NOT NULL CHECK (last_seq >= 0),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A run's trace is written once, read whole (`switchboard runs show`) and never searched: `json`
-- keeps its text as given, where `jsonb` parses and rebuilds it on every insert (the biggest
-- part of the database's CPU per webhook). Existing traces are converted once; lz4 as before.
ALTER TABLE behavior_runs ALTER COLUMN trace TYPE json USING trace::json;
ALTER TABLE behavior_runs ALTER COLUMN trace SET COMPRESSION lz4;
