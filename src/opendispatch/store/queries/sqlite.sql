-- Named queries for the SQLite store (see store/queries.py). Parameters are positional (?).

-- name: insert_account
INSERT INTO accounts (api_key, api_secret_hash, signature_secret, created_at_ms)
VALUES (?, ?, ?, ?);

-- name: insert_application
INSERT INTO applications
    (application_id, api_key, name, status_url, final_report_url, public_key_pem, created_at_ms)
VALUES (?, ?, ?, ?, ?, ?, ?);

-- name: list_applications
SELECT application_id, name, api_key, status_url, final_report_url, created_at_ms
FROM applications
ORDER BY created_at_ms, application_id;

-- name: credentials_by_api_key
SELECT a.application_id, a.name, a.api_key, a.status_url, a.final_report_url, a.created_at_ms,
       c.api_secret_hash, c.signature_secret, a.public_key_pem
FROM applications a JOIN accounts c ON c.api_key = a.api_key
WHERE a.api_key = ?;

-- name: credentials_by_application_id
SELECT a.application_id, a.name, a.api_key, a.status_url, a.final_report_url, a.created_at_ms,
       c.api_secret_hash, c.signature_secret, a.public_key_pem
FROM applications a JOIN accounts c ON c.api_key = a.api_key
WHERE a.application_id = ?;

-- name: insert_workflow
INSERT INTO workflows
    (dispatch_uuid, application_id, template, status, request_json, created_at_ms, updated_at_ms,
     state_json, due_at_ms)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: get_workflow
SELECT dispatch_uuid, application_id, template, status, request_json, created_at_ms, updated_at_ms
FROM workflows
WHERE dispatch_uuid = ? AND application_id = ?;

-- name: list_workflows
SELECT dispatch_uuid, application_id, template, status, request_json, created_at_ms, updated_at_ms
FROM workflows
WHERE application_id = ? AND dispatch_uuid < ?
ORDER BY dispatch_uuid DESC
LIMIT ?;

-- The engine's transitions ------------------------------------------------------------------

-- name: load_workflow
SELECT w.dispatch_uuid, w.application_id, w.template, w.status, w.request_json,
       w.created_at_ms, w.updated_at_ms, w.state_json, a.api_key, a.status_url,
       a.final_report_url
FROM workflows w JOIN applications a ON a.application_id = w.application_id
WHERE w.dispatch_uuid = ?;

-- name: workflow_of_message
SELECT dispatch_uuid FROM messages WHERE message_uuid = ?;

-- name: update_workflow_state
UPDATE workflows SET state_json = ?, status = ?, due_at_ms = ?, updated_at_ms = ?
WHERE dispatch_uuid = ?;

-- name: insert_send
INSERT INTO messages
    (message_uuid, dispatch_uuid, step, channel, provider, payload_json, send_state,
     next_attempt_at_ms, created_at_ms)
VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?);

-- name: cancel_send
UPDATE messages SET send_state = 'cancelled', lease_until_ms = NULL
WHERE message_uuid = ? AND send_state = 'pending';

-- A final report is held while its workflow still has webhooks to deliver (the same
-- transition's status webhooks are inserted before it, so they count).
-- name: insert_webhook
INSERT INTO webhooks
    (event_id, dispatch_uuid, application_id, kind, message_uuid, status, url, payload, state,
     next_attempt_at_ms, created_at_ms)
SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8,
       CASE WHEN ?4 = 'final_report' AND EXISTS (
                SELECT 1 FROM webhooks WHERE dispatch_uuid = ?2 AND state = 'pending')
            THEN 'held' ELSE 'pending' END,
       ?9, ?10;

-- name: complete_send
UPDATE messages
SET send_state = ?, provider_message_id = ?, last_error = ?, lease_until_ms = NULL
WHERE message_uuid = ?;

-- name: insert_inbox
INSERT INTO inbox (message_uuid, status, error_code, error_reason, price, due_at_ms)
VALUES (?, ?, ?, ?, ?, ?);

-- name: delete_inbox
DELETE FROM inbox WHERE id = ?;

-- Sends ---------------------------------------------------------------------------------------

-- Due sends, and sends whose claim expired (its process died with them in hand).
-- name: claim_sends
UPDATE messages SET send_state = 'sending', lease_until_ms = ?1, attempts = attempts + 1
WHERE message_uuid IN (
    SELECT message_uuid FROM (
        SELECT message_uuid, next_attempt_at_ms AS due FROM messages
        WHERE send_state = 'pending' AND next_attempt_at_ms <= ?2
        UNION ALL
        SELECT message_uuid, lease_until_ms FROM messages
        WHERE send_state = 'sending' AND lease_until_ms <= ?2)
    ORDER BY due
    LIMIT ?3)
RETURNING message_uuid, dispatch_uuid, step, channel, provider, payload_json, attempts,
          created_at_ms;

-- name: retry_send
UPDATE messages
SET send_state = 'pending', next_attempt_at_ms = ?, lease_until_ms = NULL, last_error = ?
WHERE message_uuid = ? AND send_state = 'sending';

-- name: next_send_due
SELECT min(due) FROM (
    SELECT min(next_attempt_at_ms) AS due FROM messages WHERE send_state = 'pending'
    UNION ALL
    SELECT min(lease_until_ms) FROM messages WHERE send_state = 'sending');

-- Timers ----------------------------------------------------------------------------------------

-- name: due_timers
SELECT dispatch_uuid FROM workflows
WHERE due_at_ms IS NOT NULL AND due_at_ms <= ?
ORDER BY due_at_ms
LIMIT ?;

-- name: next_timer_due
SELECT min(due_at_ms) FROM workflows WHERE due_at_ms IS NOT NULL;

-- Inbox -----------------------------------------------------------------------------------------

-- name: claim_inbox
UPDATE inbox SET lease_until_ms = ?
WHERE id IN (
    SELECT id FROM (
        SELECT id, due_at_ms FROM inbox WHERE due_at_ms <= ? AND lease_until_ms IS NULL
        UNION ALL
        SELECT id, due_at_ms FROM inbox WHERE lease_until_ms <= ?)
    ORDER BY due_at_ms
    LIMIT ?)
RETURNING id, message_uuid, status, error_code, error_reason, price, due_at_ms;

-- name: next_inbox_due
SELECT min(due) FROM (
    SELECT min(due_at_ms) AS due FROM inbox WHERE lease_until_ms IS NULL
    UNION ALL
    SELECT min(lease_until_ms) FROM inbox WHERE lease_until_ms IS NOT NULL);

-- Webhooks --------------------------------------------------------------------------------------

-- Each application's due webhooks come from its own range of webhooks_due (an application at
-- its delivery limit costs nothing), with the webhooks whose lease ran out; oldest first.
-- name: claim_webhooks
UPDATE webhooks SET lease_until_ms = ?1, attempts = attempts + 1
WHERE id IN (
    SELECT id FROM (
        SELECT w.id, w.next_attempt_at_ms AS due
        FROM applications a JOIN webhooks w ON w.id IN (
            SELECT id FROM webhooks
            WHERE application_id = a.application_id AND state = 'pending'
              AND lease_until_ms IS NULL AND next_attempt_at_ms <= ?2
            ORDER BY next_attempt_at_ms
            LIMIT ?4)
        WHERE a.application_id NOT IN (SELECT value FROM json_each(?3))
        UNION ALL
        SELECT id, lease_until_ms FROM webhooks
        WHERE lease_until_ms <= ?2 AND state = 'pending'
          AND application_id NOT IN (SELECT value FROM json_each(?3)))
    ORDER BY due
    LIMIT ?4)
RETURNING id, event_id, application_id, url, payload, attempts, created_at_ms, dispatch_uuid,
          replays, coalesce(replayed_at_ms, created_at_ms) AS retry_from_ms;

-- The earliest time a webhook becomes claimable: the first of each application's range, or
-- the first lease to run out.
-- name: next_webhook_due
SELECT min(due) FROM (
    SELECT (SELECT next_attempt_at_ms FROM webhooks
            WHERE application_id = a.application_id AND state = 'pending'
              AND lease_until_ms IS NULL
            ORDER BY next_attempt_at_ms LIMIT 1) AS due
    FROM applications a
    UNION ALL
    SELECT min(lease_until_ms) FROM webhooks WHERE lease_until_ms IS NOT NULL);

-- name: release_final_report
UPDATE webhooks SET state = 'pending'
WHERE dispatch_uuid = ?1 AND state = 'held'
  AND NOT EXISTS (SELECT 1 FROM webhooks WHERE dispatch_uuid = ?1 AND state = 'pending');

-- name: record_webhook_attempt
UPDATE webhooks
SET state = ?1, next_attempt_at_ms = coalesce(?2, next_attempt_at_ms), lease_until_ms = NULL,
    last_status_code = ?3, last_error = ?4, delivered_at_ms = ?5,
    settled_at_ms = CASE WHEN ?1 IN ('delivered', 'dead') THEN ?7 END
WHERE id = ?6;

-- A claimed webhook handed back unattempted (its endpoint is backing off): the claim's
-- attempt is not counted.
-- name: defer_webhook
UPDATE webhooks
SET next_attempt_at_ms = ?, lease_until_ms = NULL, attempts = max(attempts - 1, 0)
WHERE id = ? AND state = 'pending';

-- An endpoint came back: its webhooks waiting for their next try are due now.
-- name: wake_webhooks
UPDATE webhooks SET next_attempt_at_ms = ?3
WHERE application_id = ?1 AND url = ?2 AND state = 'pending' AND lease_until_ms IS NULL
  AND next_attempt_at_ms > ?3;

-- A safety net (one process serialises everything here, so nothing should be left held).
-- name: release_settled_final_reports
UPDATE webhooks SET state = 'pending'
WHERE state = 'held'
  AND NOT EXISTS (SELECT 1 FROM webhooks p
                  WHERE p.dispatch_uuid = webhooks.dispatch_uuid AND p.state = 'pending');

-- name: list_webhooks
SELECT id, event_id, dispatch_uuid, application_id, kind, message_uuid, status, url, state,
       attempts, replays, CASE WHEN state = 'pending' THEN next_attempt_at_ms END
       AS next_attempt_at_ms, last_status_code, last_error, created_at_ms, delivered_at_ms
FROM webhooks WHERE dispatch_uuid = ? ORDER BY id;

-- Webhook lists, newest first, from `before_id` down (each shaped like list_webhooks).
-- name: list_webhooks_of_workflow
SELECT id, event_id, dispatch_uuid, application_id, kind, message_uuid, status, url, state,
       attempts, replays, CASE WHEN state = 'pending' THEN next_attempt_at_ms END
       AS next_attempt_at_ms, last_status_code, last_error, created_at_ms, delivered_at_ms
FROM webhooks
WHERE dispatch_uuid = :dispatch_uuid AND id < :before_id
  AND (:application_id IS NULL OR application_id = :application_id)
  AND (:state IS NULL OR state = :state)
ORDER BY id DESC LIMIT :limit;

-- name: list_webhooks_of_application
SELECT id, event_id, dispatch_uuid, application_id, kind, message_uuid, status, url, state,
       attempts, replays, CASE WHEN state = 'pending' THEN next_attempt_at_ms END
       AS next_attempt_at_ms, last_status_code, last_error, created_at_ms, delivered_at_ms
FROM webhooks
WHERE application_id = :application_id AND id < :before_id
  AND (:state IS NULL OR state = :state)
ORDER BY id DESC LIMIT :limit;

-- Dead letters are few among many delivered: their own partial index finds them.
-- name: list_dead_webhooks_of_application
SELECT id, event_id, dispatch_uuid, application_id, kind, message_uuid, status, url, state,
       attempts, replays, CASE WHEN state = 'pending' THEN next_attempt_at_ms END
       AS next_attempt_at_ms, last_status_code, last_error, created_at_ms, delivered_at_ms
FROM webhooks
WHERE application_id = :application_id AND state = 'dead' AND id < :before_id
ORDER BY id DESC LIMIT :limit;

-- name: list_webhooks_everywhere
SELECT id, event_id, dispatch_uuid, application_id, kind, message_uuid, status, url, state,
       attempts, replays, CASE WHEN state = 'pending' THEN next_attempt_at_ms END
       AS next_attempt_at_ms, last_status_code, last_error, created_at_ms, delivered_at_ms
FROM webhooks
WHERE id < :before_id AND (:state IS NULL OR state = :state)
ORDER BY id DESC LIMIT :limit;

-- name: find_webhook
SELECT id, event_id, dispatch_uuid, application_id, kind, message_uuid, status, url, state,
       attempts, replays, CASE WHEN state = 'pending' THEN next_attempt_at_ms END
       AS next_attempt_at_ms, last_status_code, last_error, created_at_ms, delivered_at_ms
FROM webhooks WHERE event_id = ?;

-- Replay: the same body and webhook-id again, as a new delivery with a new retry period.
-- name: replay_webhook
UPDATE webhooks
SET state = 'pending', next_attempt_at_ms = :now_ms, attempts = 0, replays = replays + 1,
    replayed_at_ms = :now_ms, settled_at_ms = NULL, delivered_at_ms = NULL,
    lease_until_ms = NULL
WHERE id = :id AND state IN ('delivered', 'dead');

-- name: replay_dead_webhooks
UPDATE webhooks
SET state = 'pending', next_attempt_at_ms = :now_ms, attempts = 0, replays = replays + 1,
    replayed_at_ms = :now_ms, settled_at_ms = NULL, delivered_at_ms = NULL,
    lease_until_ms = NULL
WHERE id IN (
    SELECT id FROM webhooks
    WHERE state = 'dead'
      AND (:application_id IS NULL OR application_id = :application_id)
      AND (:dispatch_uuid IS NULL OR dispatch_uuid = :dispatch_uuid)
    LIMIT :limit);

-- name: replay_delivered_webhooks
UPDATE webhooks
SET state = 'pending', next_attempt_at_ms = :now_ms, attempts = 0, replays = replays + 1,
    replayed_at_ms = :now_ms, settled_at_ms = NULL, delivered_at_ms = NULL,
    lease_until_ms = NULL
WHERE id IN (
    SELECT id FROM webhooks
    WHERE state = 'delivered'
      AND (:application_id IS NULL OR application_id = :application_id)
      AND (:dispatch_uuid IS NULL OR dispatch_uuid = :dispatch_uuid)
    LIMIT :limit);

-- Lookups and recovery --------------------------------------------------------------------------

-- name: message_owner
SELECT m.message_uuid, m.dispatch_uuid, w.application_id
FROM messages m JOIN workflows w ON w.dispatch_uuid = m.dispatch_uuid
WHERE m.message_uuid = ?;

-- name: unstarted_workflows
SELECT dispatch_uuid FROM workflows WHERE state_json IS NULL LIMIT ?;

-- name: release_send_leases
UPDATE messages SET send_state = 'pending', lease_until_ms = NULL WHERE send_state = 'sending';

-- name: release_webhook_leases
UPDATE webhooks SET lease_until_ms = NULL WHERE lease_until_ms IS NOT NULL;

-- name: release_inbox_leases
UPDATE inbox SET lease_until_ms = NULL WHERE lease_until_ms IS NOT NULL;

-- Retention ---------------------------------------------------------------------------------------

-- Settled webhooks (delivered or dead) older than the retention, oldest first.
-- name: expire_webhooks
DELETE FROM webhooks WHERE id IN (
    SELECT id FROM webhooks
    WHERE settled_at_ms IS NOT NULL AND settled_at_ms < ?
    ORDER BY settled_at_ms
    LIMIT ?);

-- Ended workflows older than the retention with no webhook left (those go by their own rule).
-- name: expired_workflows
SELECT w.dispatch_uuid FROM workflows w
WHERE w.status <> 'in_progress' AND w.updated_at_ms < ?
  AND NOT EXISTS (SELECT 1 FROM webhooks h WHERE h.dispatch_uuid = w.dispatch_uuid)
ORDER BY w.updated_at_ms
LIMIT ?;

-- name: delete_workflows_inbox
DELETE FROM inbox WHERE message_uuid IN (
    SELECT message_uuid FROM messages WHERE dispatch_uuid IN (SELECT value FROM json_each(?)));

-- name: delete_workflows_sandbox_sends
DELETE FROM sandbox_sends WHERE message_uuid IN (
    SELECT message_uuid FROM messages WHERE dispatch_uuid IN (SELECT value FROM json_each(?)));

-- name: delete_workflows_messages
DELETE FROM messages WHERE dispatch_uuid IN (SELECT value FROM json_each(?));

-- name: delete_workflows
DELETE FROM workflows WHERE dispatch_uuid IN (SELECT value FROM json_each(?));

-- Sandbox provider ----------------------------------------------------------------------------

-- name: sandbox_record_send
INSERT INTO sandbox_sends (message_uuid, channel, recipient, outcome, attempts, first_sent_at_ms)
VALUES (?, ?, ?, ?, 1, ?)
ON CONFLICT (message_uuid) DO UPDATE SET attempts = attempts + 1
RETURNING attempts;
