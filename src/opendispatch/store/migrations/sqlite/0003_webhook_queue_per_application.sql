-- Webhook claims walk each application's own range of due webhooks (as PostgreSQL's 0003).
-- With one index over every application's due webhooks, a claim that skips the applications
-- at their delivery limit walked all of their backlog to find nothing: measured 8.5 ms per
-- claim at 13,000 blocked rows and 60 ms at 313,000, on the event loop, so one tenant's dead
-- receiver delayed every other tenant's webhooks. Leased webhooks leave the index while their
-- attempt is under way; a lease that runs out is found through webhooks_leased.
DROP INDEX webhooks_due;
CREATE INDEX webhooks_due ON webhooks (application_id, next_attempt_at_ms)
    WHERE state = 'pending' AND lease_until_ms IS NULL;
