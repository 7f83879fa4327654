-- Dead letters you can list and replay, and retention.
--   settled_at_ms: when the webhook was delivered or declared dead (retention counts from it);
--   replays, replayed_at_ms: how often an operator replayed it, and when last (a replay
--   starts a new retry period, and each attempt's `jti` stays unique across replays).
ALTER TABLE webhooks ADD COLUMN settled_at_ms bigint;
ALTER TABLE webhooks ADD COLUMN replays integer NOT NULL DEFAULT 0;
ALTER TABLE webhooks ADD COLUMN replayed_at_ms bigint;
UPDATE webhooks SET settled_at_ms = coalesce(delivered_at_ms, next_attempt_at_ms)
WHERE state IN ('delivered', 'dead');

-- An application's webhooks, newest first; its dead ones alone (few, among many delivered).
CREATE INDEX webhooks_by_application ON webhooks (application_id, id);
CREATE INDEX webhooks_dead ON webhooks (application_id, id) WHERE state = 'dead';
-- Replay names a webhook by the id receivers see (`webhook-id`).
CREATE INDEX webhooks_by_event ON webhooks (event_id);
-- Retention walks settled webhooks and ended workflows oldest first, in small batches.
CREATE INDEX webhooks_settled ON webhooks (settled_at_ms) WHERE settled_at_ms IS NOT NULL;
CREATE INDEX workflows_ended ON workflows (updated_at_ms) WHERE status <> 'in_progress';
