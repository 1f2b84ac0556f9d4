-- Run traces are often over the 2 kB at which PostgreSQL compresses a value; lz4 (PostgreSQL
-- 14+) costs a fraction of the default pglz's CPU on every webhook's run record. Existing rows
-- keep their compression; new values use lz4.
ALTER TABLE behavior_runs ALTER COLUMN trace SET COMPRESSION lz4;
