-- The operator's read commands (`switchboard messages|runs|jobs|suppressions list`, store module
-- `views`): indexes for their filters and their newest-first pages, the columns that say whom an
-- outbound job was for, and the suppression reason `switchboard suppressions add` records.
--
-- Plain CREATE INDEX takes a write lock on the table while it builds. On a large installation,
-- build these first by hand with `CREATE INDEX CONCURRENTLY IF NOT EXISTS` and the same names:
-- this migration then skips them.

-- `messages list`: newest first (the cursor is (received_at, message_sid)), and by listener
-- (`--listener`, and `--bot` through the bot's listeners).
CREATE INDEX IF NOT EXISTS inbound_messages_received
    ON inbound_messages (received_at, message_sid);
CREATE INDEX IF NOT EXISTS inbound_messages_listener_received
    ON inbound_messages (listener_id, received_at, message_sid);

-- `runs list`: newest first (the cursor is (created_at, id)) and by listener; by behavior (and
-- `--bot`, through the bot's behaviors) uses behavior_runs_behavior.
CREATE INDEX IF NOT EXISTS behavior_runs_created
    ON behavior_runs (created_at, id);
CREATE INDEX IF NOT EXISTS behavior_runs_listener_created
    ON behavior_runs (listener_id, created_at, id) WHERE listener_id IS NOT NULL;

-- `jobs list`: newest first (the cursor is (created_at, idempotency_key)), and whom the job was
-- for: the connected account it sends from and its recipient (`to`), for `--account` and
-- `--number`. NULL where the writer of the row did not record them.
ALTER TABLE outbound_jobs
    ADD COLUMN IF NOT EXISTS account_id  BIGINT,
    ADD COLUMN IF NOT EXISTS recipient   TEXT;
CREATE INDEX IF NOT EXISTS outbound_jobs_created
    ON outbound_jobs (created_at, idempotency_key);
CREATE INDEX IF NOT EXISTS outbound_jobs_recipient_created
    ON outbound_jobs (recipient, created_at, idempotency_key) WHERE recipient IS NOT NULL;
CREATE INDEX IF NOT EXISTS outbound_jobs_account_created
    ON outbound_jobs (account_id, created_at, idempotency_key) WHERE account_id IS NOT NULL;

-- `suppressions add`: an operator's suppression (its `detail` is the reason the operator gave).
ALTER TABLE sms_suppressions DROP CONSTRAINT IF EXISTS sms_suppressions_reason_check;
ALTER TABLE sms_suppressions ADD CONSTRAINT sms_suppressions_reason_check
    CHECK (reason IN ('keyword', 'twilio_21610', 'operator'));
-- `suppressions list`: newest first across accounts (the primary key serves one account).
CREATE INDEX IF NOT EXISTS sms_suppressions_created
    ON sms_suppressions (created_at, account_id, number);
