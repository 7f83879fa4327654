-- Webhook claims walk each application's own range of due webhooks. One index over every
-- application's due webhooks made a claim that skips the applications at their delivery
-- limit walk past all of their backlog to find nothing (measured: 6.5 ms and 1,000 buffers
-- per claim with one busy application, most of the database's time). Leased webhooks leave
-- the index while their attempt is under way; a lease that runs out is found through
-- webhooks_leased.
DROP INDEX webhooks_due;
CREATE INDEX webhooks_due ON webhooks (application_id, next_attempt_at_ms)
    WHERE state = 'pending' AND lease_until_ms IS NULL;
