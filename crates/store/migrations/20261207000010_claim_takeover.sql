-- A MessageSid claim whose worker died (crashed between the claim and the answer) is taken over
-- by a later delivery once it is older than the worker's claim timeout, instead of answering
-- every later delivery 503 forever. `claimed_at` is when the current claimant took it (NULL: at
-- `received_at`, the first claim).
ALTER TABLE inbound_messages ADD COLUMN IF NOT EXISTS claimed_at TIMESTAMPTZ;
