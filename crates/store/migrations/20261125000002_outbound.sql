-- The outbound service's job state: one row per job (its idempotency key), so that a job
-- redelivered by JetStream, or published twice, is never sent twice to Twilio.
--
--   queued  -> sending -> sent     (twilio_sid recorded)
--                      -> queued   (a retryable failure that certainly created nothing)
--                      -> sending  (an ambiguous failure: the next attempt lists first)
--                      -> failed   (a permanent Twilio error, an unknown account)
--                      -> dead     (retries or age exhausted; copied to the dead-letter stream)
CREATE TABLE outbound_jobs (
    idempotency_key     TEXT PRIMARY KEY,
    job_id              TEXT NOT NULL,
    job_type            TEXT NOT NULL,
    state               TEXT NOT NULL DEFAULT 'queued'
                        CHECK (state IN ('queued', 'sending', 'sent', 'failed', 'dead')),
    -- Creates started at Twilio (an ambiguity check that adopts a message does not count).
    attempts            INTEGER NOT NULL DEFAULT 0,
    -- While a create is in flight: no other delivery of the same key may start one before this.
    lease_until         TIMESTAMPTZ,
    twilio_sid          TEXT,
    twilio_status       TEXT,
    last_error_code     TEXT,
    last_error_message  TEXT,
    -- The events already published (a redelivery after a crash publishes what is missing).
    accepted_published  BOOLEAN NOT NULL DEFAULT FALSE,
    final_published     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    first_attempt_at    TIMESTAMPTZ,
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at         TIMESTAMPTZ
);
CREATE INDEX outbound_jobs_job_id ON outbound_jobs (job_id);
-- A Twilio message belongs to one job at most: the ambiguity check never adopts it twice.
CREATE UNIQUE INDEX outbound_jobs_twilio_sid ON outbound_jobs (twilio_sid) WHERE twilio_sid IS NOT NULL;
