-- Outbound limits shared by every outbound replica (they are separate processes, so the state
-- lives here): the per-sender send schedule and the per-account suppression (opt-out) list.

-- One row per (account, sender): the sender's virtual schedule (GCRA). `next_free` is the
-- earliest time the next message may start; a job reserves `segments / rate` seconds from
-- max(next_free, now(), paused_until) in one UPDATE ... RETURNING. `paused_until` is set when
-- Twilio answers 429/20429 or 21611 for this sender: nothing starts before it.
CREATE TABLE outbound_sender_schedule (
    account_id    BIGINT NOT NULL REFERENCES connected_accounts (id) ON DELETE CASCADE,
    -- The `from` number / sender ID, or the Messaging Service SID (MG...).
    sender        TEXT NOT NULL,
    next_free     TIMESTAMPTZ NOT NULL,
    paused_until  TIMESTAMPTZ,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, sender)
);

-- A job's reserved slot for its next create attempt, so a redelivery of the same job (after a
-- shutdown or a crash while it waited) reuses it instead of reserving a second one. A slot that
-- passed unused is not reused (its time is gone); it is replaced by a fresh one. Deleted when the
-- create starts; rows of jobs that never came back are swept after an hour.
CREATE TABLE outbound_rate_reservations (
    idempotency_key  TEXT PRIMARY KEY,
    -- The create attempt (outbound_jobs.attempts + 1) the slot is for.
    attempt          INTEGER NOT NULL,
    account_id       BIGINT NOT NULL,
    sender           TEXT NOT NULL,
    segments         INTEGER NOT NULL,
    slot_at          TIMESTAMPTZ NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX outbound_rate_reservations_slot_at ON outbound_rate_reservations (slot_at);

-- Numbers an account must not send to: the recipient texted an opt-out keyword (STOP, ...) to
-- one of the account's numbers, or Twilio refused a send with 21610. An opt-in keyword (START,
-- YES, UNSTOP) deletes the row.
CREATE TABLE sms_suppressions (
    account_id  BIGINT NOT NULL REFERENCES connected_accounts (id) ON DELETE CASCADE,
    -- E.164, as Twilio posts `From` / as the job's `to`.
    number      TEXT NOT NULL,
    reason      TEXT NOT NULL CHECK (reason IN ('keyword', 'twilio_21610')),
    -- What was seen: the keyword as received, or Twilio's error message.
    detail      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, number)
);
