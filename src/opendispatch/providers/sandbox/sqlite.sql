-- The sandbox provider's own log (store migrations create its table; the store never reads
-- it). Same names and parameters as postgres.sql.

-- One send asked of the sandbox: its attempt count (the message uuid is its idempotency
-- key) and when it was first asked, which its simulated statuses count from.
-- name: sandbox_record_sends
INSERT INTO sandbox_sends (message_uuid, channel, recipient, outcome, attempts, first_sent_at_ms)
VALUES (:message_uuid, :channel, :recipient, :outcome, 1, :sent_at_ms)
ON CONFLICT (message_uuid) DO UPDATE SET attempts = attempts + 1
RETURNING message_uuid, attempts, first_sent_at_ms;

-- name: sandbox_expire_sends
DELETE FROM sandbox_sends WHERE message_uuid IN (
    SELECT message_uuid FROM sandbox_sends WHERE first_sent_at_ms < :before_ms LIMIT :limit);

-- `apps delete --purge`: what the sandbox was asked to send for the application's workflows
-- (run before the store deletes their messages, through which they are found).
-- name: sandbox_forget_application
DELETE FROM sandbox_sends WHERE message_uuid IN (
    SELECT m.message_uuid FROM workflows w JOIN messages m ON m.dispatch_uuid = w.dispatch_uuid
    WHERE w.application_id = :application_id);
