-- Retention (crates/store/src/retention.rs; the pruner runs in behavior-worker).
-- Per-account override of how many days the message log, behavior runs and finished outbound
-- jobs of an account are kept; NULL: the pruner's global setting applies.
ALTER TABLE connected_accounts
    ADD COLUMN IF NOT EXISTS retention_days INTEGER CHECK (retention_days > 0);

-- The pruner finds the messages that point at a run (and every run deletion checks the foreign
-- key inbound_messages.run_id): without this, each deleted run scans the message log.
CREATE INDEX IF NOT EXISTS inbound_messages_run
    ON inbound_messages (run_id) WHERE run_id IS NOT NULL;
-- Runs are matched to their message by MessageSid (the primary key of inbound_messages).
