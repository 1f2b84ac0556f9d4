-- Connected accounts for HTTP services beyond Twilio (issue 12). An account has a kind, which
-- says how outbound attaches its secret to a behavior's HTTP request, and only ever for the
-- account's allowed hosts, over https with TLS verification (docs/semantics.md, Decision 11):
--
--   twilio   Authorization: Basic base64(account_sid:token)   (every row before this migration)
--   bearer   Authorization: Bearer <token>
--   basic    Authorization: Basic base64(auth_username:password)
--   api-key  <auth_header>: <key>, or ?<auth_query_param>=<key>
--
-- The secret (token, password or key) is in auth_token_enc, encrypted as Twilio tokens are
-- (Decision 12). `provider` stays the service the account is for: 'twilio' for Twilio accounts,
-- otherwise what the operator named (`accounts add --service`, default 'http': any service).
-- account_sid is Twilio's: NULL for the other kinds, so nothing that looks accounts up by
-- AccountSid (webhook signatures, status callbacks, SMS and lookup jobs) can find them.
ALTER TABLE connected_accounts
    ADD COLUMN kind             TEXT NOT NULL DEFAULT 'twilio',
    ADD COLUMN auth_username    TEXT,
    ADD COLUMN auth_header      TEXT,
    ADD COLUMN auth_query_param TEXT,
    ALTER COLUMN account_sid DROP NOT NULL;

ALTER TABLE connected_accounts ADD CONSTRAINT connected_accounts_kind CHECK (
    CASE kind
        WHEN 'twilio' THEN account_sid IS NOT NULL
            AND auth_username IS NULL AND auth_header IS NULL AND auth_query_param IS NULL
        WHEN 'bearer' THEN account_sid IS NULL
            AND auth_username IS NULL AND auth_header IS NULL AND auth_query_param IS NULL
        WHEN 'basic' THEN account_sid IS NULL
            AND auth_username IS NOT NULL AND auth_header IS NULL AND auth_query_param IS NULL
        WHEN 'api-key' THEN account_sid IS NULL AND auth_username IS NULL
            AND (auth_header IS NULL) <> (auth_query_param IS NULL)
        ELSE false
    END
);

-- A non-Twilio account is for somebody's service, never Twilio's, and names its hosts.
ALTER TABLE connected_accounts ADD CONSTRAINT connected_accounts_http_hosts CHECK (
    kind = 'twilio' OR (provider <> 'twilio' AND cardinality(allowed_hosts) > 0)
);
