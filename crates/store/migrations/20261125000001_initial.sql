-- Switchboard's initial schema: connected accounts, imported bots/behaviors/listeners,
-- the inbound message log and behavior runs.

-- One id space for every imported record, like Cerb's `uid.*` map.
CREATE SEQUENCE record_ids;

CREATE TABLE connected_accounts (
    id              BIGSERIAL PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    provider        TEXT NOT NULL DEFAULT 'twilio',
    account_sid     TEXT NOT NULL,
    -- AES-256-GCM: 12-byte nonce followed by the ciphertext and tag.
    auth_token_enc  BYTEA NOT NULL,
    allowed_hosts   TEXT[] NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX connected_accounts_sid ON connected_accounts (account_sid);

CREATE TABLE imports (
    id            BIGSERIAL PRIMARY KEY,
    package_name  TEXT NOT NULL,
    records       JSONB NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE bots (
    id           BIGINT PRIMARY KEY,
    import_id    BIGINT NOT NULL REFERENCES imports (id),
    uid          TEXT NOT NULL,
    name         TEXT NOT NULL,
    is_disabled  BOOLEAN NOT NULL,
    owner        JSONB NOT NULL,
    params       JSONB NOT NULL,
    image        TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE behaviors (
    id           BIGINT PRIMARY KEY,
    bot_id       BIGINT NOT NULL REFERENCES bots (id),
    uid          TEXT NOT NULL,
    title        TEXT NOT NULL,
    event        TEXT NOT NULL,
    is_disabled  BOOLEAN NOT NULL,
    is_private   BOOLEAN NOT NULL,
    priority     BIGINT NOT NULL,
    -- The whole behavior definition (variables, node tree) as the engine compiles it.
    definition   JSONB NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX behaviors_bot ON behaviors (bot_id);

CREATE TABLE webhook_listeners (
    id                BIGINT PRIMARY KEY,
    import_id         BIGINT NOT NULL REFERENCES imports (id),
    uid               TEXT NOT NULL,
    name              TEXT NOT NULL,
    guid              TEXT NOT NULL CHECK (length(guid) BETWEEN 1 AND 40),
    extension_id      TEXT NOT NULL,
    extension_params  JSONB NOT NULL,
    behavior_id       BIGINT,
    verify_signature  BOOLEAN NOT NULL DEFAULT TRUE,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Guids are matched case-insensitively (Decision 6) and must be unique that way.
CREATE UNIQUE INDEX webhook_listeners_guid ON webhook_listeners (lower(guid));

CREATE TABLE behavior_runs (
    id            BIGSERIAL PRIMARY KEY,
    behavior_id   BIGINT NOT NULL,
    listener_id   BIGINT,
    message_sid   TEXT,
    request_id    TEXT,
    -- OpenTelemetry trace id of the run (32 hex digits; empty when tracing is off).
    trace_id      TEXT NOT NULL DEFAULT '',
    mode          TEXT NOT NULL,
    exit_state    TEXT NOT NULL,
    status        INTEGER,
    trace         JSONB NOT NULL,
    errors        JSONB NOT NULL,
    duration_us   BIGINT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX behavior_runs_behavior ON behavior_runs (behavior_id, created_at);

-- One row per inbound Twilio message: claimed before the run, completed with the response.
CREATE TABLE inbound_messages (
    message_sid   TEXT PRIMARY KEY,
    listener_id   BIGINT NOT NULL,
    account_sid   TEXT,
    request_id    TEXT,
    request       JSONB NOT NULL,
    response      JSONB,
    run_id        BIGINT REFERENCES behavior_runs (id),
    received_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at  TIMESTAMPTZ
);
