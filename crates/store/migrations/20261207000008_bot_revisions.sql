-- Every import and every `bots update` / `bots rollback` of a bot is kept as a revision: the
-- bot's behaviors and webhook listeners as they were written (prompts answered, templates
-- rendered), so a rollback restores them exactly. Revisions go with their bot
-- (`bots delete`).
CREATE TABLE bot_revisions (
    bot_id        BIGINT NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    revision      INTEGER NOT NULL CHECK (revision > 0),
    -- import, update, rollback, or found (the state of a bot imported before revisions).
    kind          TEXT NOT NULL,
    package_name  TEXT NOT NULL,
    summary       TEXT NOT NULL,
    -- {"bot": BotDef with its behaviors, "webhooks": [WebhookListenerDef]}
    state         JSONB NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (bot_id, revision)
);
