-- Delivery status of the messages outbound jobs created, from Twilio's status callbacks
-- (received by ingress, verified and recorded by the behavior worker). `twilio_status` stays the
-- status Twilio answered the create with; these columns follow the callbacks and only ever move
-- forward (callbacks are not ordered: a `sent` may arrive after `delivered`).
ALTER TABLE outbound_jobs
    ADD COLUMN delivery_status         TEXT,
    ADD COLUMN delivery_error_code     TEXT,
    ADD COLUMN delivery_error_message  TEXT,
    ADD COLUMN delivery_updated_at     TIMESTAMPTZ;
