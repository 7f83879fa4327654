-- The store's named queries on SQLite (see store/named_queries.py). postgres.sql has the same
-- names with the same named parameters (:name) and the same result columns. A parameter that
-- is a list is bound as a JSON array (read with json_each); `execute_many` runs a query once
-- per row (executemany). A query may be a short script: its statements run in order, in the
-- same transaction.
--
-- One process serves an SQLite file, so its claims never race another process: leases only
-- protect against the process's own crash (released at the next start), and :lease_owner is
-- accepted but not needed.

-- Applications ---------------------------------------------------------------------------------

-- name: insert_account
INSERT INTO accounts (api_key, api_secret_hash, signature_secret, created_at_ms)
VALUES (:api_key, :api_secret_hash, :signature_secret, :created_at_ms);

-- name: insert_application
INSERT INTO applications
    (application_id, api_key, name, status_url, final_report_url, public_key_pem, created_at_ms,
     live)
VALUES (:application_id, :api_key, :name, :status_url, :final_report_url, :public_key_pem,
        :created_at_ms, :live);

-- A deleted application (its data kept: `deleted_at_ms`) is found by none of these: it is not
-- listed, and its credentials are refused at once.
-- name: list_applications
SELECT application_id, name, api_key, status_url, final_report_url, created_at_ms, live
FROM applications
WHERE deleted_at_ms IS NULL
ORDER BY created_at_ms, application_id;

-- name: get_application
SELECT application_id, name, api_key, status_url, final_report_url, created_at_ms, live
FROM applications
WHERE application_id = :application_id AND deleted_at_ms IS NULL;

-- name: credentials_by_api_key
SELECT a.application_id, a.name, a.api_key, a.status_url, a.final_report_url, a.created_at_ms,
       a.live, c.api_secret_hash, c.signature_secret, a.public_key_pem,
       c.previous_secret_hash, c.previous_secret_expires_at_ms
FROM applications a JOIN accounts c ON c.api_key = a.api_key
WHERE a.api_key = :api_key AND a.deleted_at_ms IS NULL;

-- name: credentials_by_application_id
SELECT a.application_id, a.name, a.api_key, a.status_url, a.final_report_url, a.created_at_ms,
       a.live, c.api_secret_hash, c.signature_secret, a.public_key_pem,
       c.previous_secret_hash, c.previous_secret_expires_at_ms
FROM applications a JOIN accounts c ON c.api_key = a.api_key
WHERE a.application_id = :application_id AND a.deleted_at_ms IS NULL;

-- Changing an application ------------------------------------------------------------------

-- A NULL parameter leaves its setting as it is.
-- name: update_application
UPDATE applications
SET name = coalesce(:name, name), status_url = coalesce(:status_url, status_url),
    final_report_url = coalesce(:final_report_url, final_report_url)
WHERE application_id = :application_id AND deleted_at_ms IS NULL;

-- Webhooks not delivered yet (pending, being attempted, or held) go to the application's URLs
-- as they are now: status webhooks to :status_url, final reports to :final_report_url (the
-- status URL when it has none). Those it moves are due at once: the new receiver has not
-- failed yet. Each branch walks its own small index (due, leased, held), never the
-- application's delivered history.
-- name: repoint_webhooks
UPDATE webhooks
SET url = CASE WHEN kind = 'final_report' THEN :final_report_url ELSE :status_url END,
    next_attempt_at_ms = min(next_attempt_at_ms, :now_ms)
WHERE id IN (
    SELECT id FROM webhooks
    WHERE application_id = :application_id AND state = 'pending' AND lease_until_ms IS NULL
    UNION ALL
    SELECT id FROM webhooks
    WHERE lease_until_ms IS NOT NULL AND state = 'pending' AND application_id = :application_id
    UNION ALL
    SELECT id FROM webhooks WHERE state = 'held' AND application_id = :application_id)
  AND url <> CASE WHEN kind = 'final_report' THEN :final_report_url ELSE :status_url END;

-- A new API secret (its hash). The one it replaces stays good until :previous_expires_at_ms,
-- or not at all when that is NULL; a secret replaced earlier is forgotten either way.
-- name: rotate_api_secret
UPDATE accounts
SET previous_secret_hash = CASE WHEN :previous_expires_at_ms IS NULL THEN NULL
                                ELSE api_secret_hash END,
    previous_secret_expires_at_ms = :previous_expires_at_ms,
    api_secret_hash = :api_secret_hash
WHERE api_key = (SELECT api_key FROM applications
                 WHERE application_id = :application_id AND deleted_at_ms IS NULL);

-- Deleting an application: one transaction of these, in this order (see
-- DatabaseStore.delete_application). Found even when deleted already (its data kept), so
-- that it can still be purged.
-- name: find_application_to_delete
SELECT application_id, api_key, deleted_at_ms FROM applications
WHERE application_id = :application_id;

-- name: mark_application_deleted
UPDATE applications SET deleted_at_ms = :now_ms
WHERE application_id = :application_id AND deleted_at_ms IS NULL;

-- Its running workflows end in `error`, at once, without a final report (nobody is left to
-- receive it); their deadlines go. Every open workflow has a deadline, so the deadline index
-- finds them all. The engine's state says the same (it is what GET and any later event read).
-- name: end_application_workflows
UPDATE workflows
SET status = 'error', due_at_ms = NULL, updated_at_ms = :now_ms,
    state_json = json_set(state_json, '$.status', 'error', '$.due_at_ms', NULL,
                          '$.ended_at_ms', :now_ms)
WHERE due_at_ms IS NOT NULL AND application_id = :application_id;

-- Sends not made yet are never made; one in a provider's hands finishes (its outcome is
-- recorded, nothing follows from it) but is never retried.
-- name: cancel_application_sends
UPDATE messages
SET send_state = 'cancelled', lease_until_ms = NULL,
    last_error = 'cancelled: the application was deleted'
WHERE message_uuid IN (
    SELECT message_uuid FROM messages
    WHERE send_state = 'pending' AND application_id = :application_id
    UNION ALL
    SELECT message_uuid FROM messages
    WHERE send_state = 'sending' AND application_id = :application_id);

-- Webhooks not delivered yet are dropped (the same selection as repoint_webhooks). One
-- being attempted right now may still arrive; its outcome then updates nothing.
-- name: drop_application_webhooks
DELETE FROM webhooks WHERE id IN (
    SELECT id FROM webhooks
    WHERE application_id = :application_id AND state = 'pending' AND lease_until_ms IS NULL
    UNION ALL
    SELECT id FROM webhooks
    WHERE lease_until_ms IS NOT NULL AND state = 'pending' AND application_id = :application_id
    UNION ALL
    SELECT id FROM webhooks WHERE state = 'held' AND application_id = :application_id);

-- Its provider routes are configuration, not history: they go, so that the provider
-- accounts they name can be removed.
-- name: delete_application_routes
DELETE FROM provider_routes WHERE application_id = :application_id;

-- name: wipe_application_credentials
UPDATE accounts
SET api_secret_hash = '', signature_secret = '', previous_secret_hash = NULL,
    previous_secret_expires_at_ms = NULL
WHERE api_key = (SELECT api_key FROM applications WHERE application_id = :application_id);

-- `--purge`: its rows go too. One process writes an SQLite file, so nothing can write the
-- application's workflows between these statements (PostgreSQL locks them first).
-- name: lock_application_workflows
SELECT :application_id;

-- name: purge_application_inbox
DELETE FROM inbox WHERE message_uuid IN (
    SELECT m.message_uuid FROM workflows w JOIN messages m ON m.dispatch_uuid = w.dispatch_uuid
    WHERE w.application_id = :application_id);

-- name: purge_application_messages
DELETE FROM messages WHERE dispatch_uuid IN (
    SELECT dispatch_uuid FROM workflows WHERE application_id = :application_id);

-- name: purge_application_webhooks
DELETE FROM webhooks WHERE application_id = :application_id;

-- name: purge_application_workflows
DELETE FROM workflows WHERE application_id = :application_id;

-- name: purge_application_tokens
DELETE FROM seen_tokens WHERE application_id = :application_id;

-- name: purge_application_idempotency_keys
DELETE FROM idempotency_keys WHERE application_id = :application_id;

-- The application, then its account (which the application refers to).
-- name: purge_application
DELETE FROM applications WHERE application_id = :application_id;
DELETE FROM accounts WHERE api_key = :api_key;

-- Provider accounts and routes ---------------------------------------------------------------

-- name: insert_provider_account
INSERT INTO provider_accounts
    (name, kind, base_url, settings_json, secrets, created_at_ms, updated_at_ms)
VALUES (:name, :kind, :base_url, :settings_json, :secrets, :now_ms, :now_ms);

-- name: update_provider_account
UPDATE provider_accounts
SET kind = :kind, base_url = :base_url, settings_json = :settings_json, secrets = :secrets,
    updated_at_ms = :now_ms
WHERE name = :name;

-- name: list_provider_accounts
SELECT name, kind, base_url, settings_json, secrets, created_at_ms, updated_at_ms
FROM provider_accounts
ORDER BY name;

-- name: get_provider_account
SELECT name, kind, base_url, settings_json, secrets, created_at_ms, updated_at_ms
FROM provider_accounts
WHERE name = :name;

-- name: delete_provider_account
DELETE FROM provider_accounts
WHERE name = :name AND NOT EXISTS (SELECT 1 FROM provider_routes WHERE provider = :name);

-- name: routes_using_provider
SELECT application_id, channel FROM provider_routes
WHERE provider = :name
GROUP BY application_id, channel
ORDER BY application_id, channel;

-- name: delete_route
DELETE FROM provider_routes WHERE application_id = :application_id AND channel = :channel;

-- name: insert_route_stop
INSERT INTO provider_routes (application_id, channel, position, provider)
VALUES (:application_id, :channel, :position, :provider);

-- name: list_routes
SELECT application_id, channel, position, provider FROM provider_routes
ORDER BY application_id, channel, position;

-- name: list_routes_of_application
SELECT application_id, channel, position, provider FROM provider_routes
WHERE application_id = :application_id
ORDER BY channel, position;

-- name: application_is_live
SELECT live FROM applications WHERE application_id = :application_id AND deleted_at_ms IS NULL;

-- Workflows ------------------------------------------------------------------------------------

-- name: get_workflow
SELECT dispatch_uuid, application_id, template, status, request_json, created_at_ms, updated_at_ms
FROM workflows
WHERE dispatch_uuid = :dispatch_uuid AND application_id = :application_id;

-- Newest first, down an index. :before is the last dispatch_uuid of the previous page ("g"
-- sorts after every UUID); a time range narrows [:after, :before), since a UUIDv7 begins with
-- its creation time (ids.uuid7_time_prefix). A channel filters the rows walked; a workflow
-- stored before its `channels` column existed (migration 0010) has its channels read from
-- its submitted JSON.
-- name: list_workflows
SELECT dispatch_uuid, application_id, template, status, request_json, created_at_ms, updated_at_ms
FROM workflows
WHERE application_id = :application_id AND dispatch_uuid < :before AND dispatch_uuid >= :after
  AND (:channel IS NULL OR instr(coalesce(channels, (
          SELECT ',' || group_concat(json_extract(step.value, '$.to.type'), ',') || ','
          FROM json_each(request_json, '$.workflow') AS step)), :channel) > 0)
ORDER BY dispatch_uuid DESC
LIMIT :limit;

-- The same for one status, down workflows_by_status (a list of several statuses runs this
-- once per status and merges the pages).
-- name: list_workflows_of_status
SELECT dispatch_uuid, application_id, template, status, request_json, created_at_ms, updated_at_ms
FROM workflows
WHERE application_id = :application_id AND status = :status
  AND dispatch_uuid < :before AND dispatch_uuid >= :after
  AND (:channel IS NULL OR instr(coalesce(channels, (
          SELECT ',' || group_concat(json_extract(step.value, '$.to.type'), ',') || ','
          FROM json_each(request_json, '$.workflow') AS step)), :channel) > 0)
ORDER BY dispatch_uuid DESC
LIMIT :limit;

-- A deleted application's workflows are never loaded again: no event changes them.
-- name: load_workflow
SELECT w.dispatch_uuid, w.application_id, w.template, w.status, w.request_json,
       w.created_at_ms, w.updated_at_ms, w.state_json, a.api_key, a.status_url,
       a.final_report_url
FROM workflows w JOIN applications a ON a.application_id = w.application_id
WHERE w.dispatch_uuid = :dispatch_uuid AND a.deleted_at_ms IS NULL;

-- name: unstarted_workflows
SELECT w.dispatch_uuid FROM workflows w JOIN applications a ON a.application_id = w.application_id
WHERE w.state_json IS NULL AND a.deleted_at_ms IS NULL
LIMIT :limit;

-- name: message_owner
SELECT m.message_uuid, m.dispatch_uuid, w.application_id
FROM messages m JOIN workflows w ON w.dispatch_uuid = m.dispatch_uuid
WHERE m.message_uuid = :message_uuid;

-- Sends ----------------------------------------------------------------------------------------

-- Due sends, and sends whose claim expired (its process died with them in hand). A send of a
-- live application that was in hand may have reached its provider, which takes no idempotency
-- key: it is never claimed again (see `release_leases`, and `Unknown` in providers/base.py).
-- name: claim_sends
UPDATE messages
SET send_state = 'sending', lease_until_ms = :lease_until_ms, attempts = attempts + 1
WHERE message_uuid IN (
    SELECT message_uuid FROM (
        SELECT message_uuid, next_attempt_at_ms AS due FROM messages
        WHERE send_state = 'pending' AND next_attempt_at_ms <= :now_ms
        UNION ALL
        SELECT message_uuid, lease_until_ms FROM messages
        WHERE send_state = 'sending' AND lease_until_ms <= :now_ms
          AND application_id NOT IN (SELECT application_id FROM applications WHERE live = 1))
    ORDER BY due
    LIMIT :limit)
RETURNING message_uuid, dispatch_uuid, application_id, step, channel, provider, payload_json,
          attempts, created_at_ms, next_attempt_at_ms;

-- name: retry_send
UPDATE messages
SET send_state = 'pending', next_attempt_at_ms = :next_attempt_at_ms, lease_until_ms = NULL,
    last_error = :error, provider = coalesce(nullif(:provider, ''), provider)
WHERE message_uuid = :message_uuid AND send_state = 'sending';

-- The request went out and no answer came back: never sent again (its callbacks, or its
-- step's deadline, settle the step).
-- name: send_outcome_unknown
UPDATE messages
SET send_state = 'unknown', lease_until_ms = NULL, last_error = :error, provider = :provider
WHERE message_uuid = :message_uuid AND send_state = 'sending';

-- A claimed send handed back untried (its providers were all paced or resting): no attempt.
-- name: defer_send
UPDATE messages
SET send_state = 'pending', next_attempt_at_ms = :next_attempt_at_ms, lease_until_ms = NULL,
    attempts = attempts - 1, last_error = :error
WHERE message_uuid = :message_uuid AND send_state = 'sending';

-- name: send_records
SELECT message_uuid, provider, send_state, attempts, provider_message_id, last_error
FROM messages WHERE dispatch_uuid = :dispatch_uuid
ORDER BY step;

-- name: message_by_provider_id
SELECT message_uuid FROM messages WHERE provider_message_id = :provider_message_id LIMIT 1;

-- name: message_for_callback
SELECT message_uuid, provider, provider_message_id FROM messages
WHERE message_uuid = :message_uuid;

-- name: next_send_due
SELECT min(due) AS due_at_ms FROM (
    SELECT min(next_attempt_at_ms) AS due FROM messages WHERE send_state = 'pending'
    UNION ALL
    SELECT min(lease_until_ms) FROM messages WHERE send_state = 'sending');

-- Timers ---------------------------------------------------------------------------------------

-- name: due_timers
SELECT dispatch_uuid FROM workflows
WHERE due_at_ms IS NOT NULL AND due_at_ms <= :now_ms
ORDER BY due_at_ms
LIMIT :limit;

-- name: next_timer_due
SELECT min(due_at_ms) AS due_at_ms FROM workflows WHERE due_at_ms IS NOT NULL;

-- Inbox: provider statuses waiting to be applied -------------------------------------------------

-- A provider's repeat of a status still waiting here is dropped (`inbox_once`).
-- name: insert_inbox_events
INSERT INTO inbox (message_uuid, status, error_code, error_reason, price, due_at_ms,
                   occurred_at_ms, provider_message_id)
VALUES (:message_uuid, :status, :error_code, :error_reason, :price, :due_at_ms,
        :occurred_at_ms, :provider_message_id)
ON CONFLICT DO NOTHING;

-- name: claim_inbox
UPDATE inbox SET lease_until_ms = :lease_until_ms
WHERE id IN (
    SELECT id FROM (
        SELECT id, due_at_ms FROM inbox WHERE due_at_ms <= :now_ms AND lease_until_ms IS NULL
        UNION ALL
        SELECT id, due_at_ms FROM inbox WHERE lease_until_ms <= :now_ms)
    ORDER BY due_at_ms
    LIMIT :limit)
RETURNING id, message_uuid, status, error_code, error_reason, price, due_at_ms, occurred_at_ms;

-- name: next_inbox_due
SELECT min(due) AS due_at_ms FROM (
    SELECT min(due_at_ms) AS due FROM inbox WHERE lease_until_ms IS NULL
    UNION ALL
    SELECT min(lease_until_ms) FROM inbox WHERE lease_until_ms IS NOT NULL);

-- Queue depths (GET /metrics) ---------------------------------------------------------------

-- What waits in each queue, as every process on the database sees it. Each count walks only
-- the partial index of the rows it counts (messages_due, messages_leased, workflows_due,
-- webhooks_due, webhooks_dead), so it costs what that queue holds, never the whole table:
-- measured at 1M workflows (100,000 open) and 2M webhooks (857,000 dead), 1-15 ms each, and
-- 50 ms (SQLite) to 100 ms (PostgreSQL) for the dead ones (see metrics/queues.py).
-- name: queue_counts
SELECT
    (SELECT count(*) FROM messages WHERE send_state = 'pending') AS sends_pending,
    (SELECT count(*) FROM messages
     WHERE send_state = 'pending' AND next_attempt_at_ms <= :now_ms) AS sends_due,
    (SELECT count(*) FROM messages WHERE send_state = 'sending') AS sends_in_flight,
    (SELECT count(*) FROM workflows WHERE due_at_ms IS NOT NULL) AS timers_pending,
    (SELECT count(*) FROM workflows
     WHERE due_at_ms IS NOT NULL AND due_at_ms <= :now_ms) AS timers_due,
    (SELECT count(*) FROM webhooks
     WHERE state = 'pending' AND lease_until_ms IS NULL
       AND next_attempt_at_ms <= :now_ms) AS webhooks_due,
    (SELECT count(*) FROM webhooks WHERE state = 'dead') AS webhooks_dead;

-- Webhooks -------------------------------------------------------------------------------------

-- Each application's due webhooks come from its own range of webhooks_due (an application at
-- its delivery limit, in :excluded, costs nothing), with the webhooks whose lease ran out;
-- oldest first across applications.
-- name: claim_webhooks
UPDATE webhooks SET lease_until_ms = :lease_until_ms, attempts = attempts + 1
WHERE id IN (
    SELECT id FROM (
        SELECT w.id, w.next_attempt_at_ms AS due
        FROM applications a JOIN webhooks w ON w.id IN (
            SELECT id FROM webhooks
            WHERE application_id = a.application_id AND state = 'pending'
              AND lease_until_ms IS NULL AND next_attempt_at_ms <= :now_ms
            ORDER BY next_attempt_at_ms
            LIMIT :limit)
        WHERE a.application_id NOT IN (SELECT value FROM json_each(:excluded))
        UNION ALL
        SELECT id, lease_until_ms FROM webhooks
        WHERE lease_until_ms <= :now_ms AND state = 'pending'
          AND application_id NOT IN (SELECT value FROM json_each(:excluded)))
    ORDER BY due
    LIMIT :limit)
RETURNING id, event_id, dispatch_uuid, application_id, kind, url, payload, attempts,
          created_at_ms, replays, coalesce(replayed_at_ms, created_at_ms) AS retry_from_ms;

-- The earliest time a webhook becomes claimable: the first of each application's range, or
-- the first lease to run out.
-- name: next_webhook_due
SELECT min(due) AS due_at_ms FROM (
    SELECT (SELECT next_attempt_at_ms FROM webhooks
            WHERE application_id = a.application_id AND state = 'pending'
              AND lease_until_ms IS NULL
            ORDER BY next_attempt_at_ms LIMIT 1) AS due
    FROM applications a
    UNION ALL
    SELECT min(lease_until_ms) FROM webhooks WHERE lease_until_ms IS NOT NULL);

-- One attempt's outcome. A settled one (delivered or dead) may be the last webhook its
-- workflow's final report waited for: the trigger webhooks_release_final_report (migration
-- 0005) releases it in the same statement.
-- name: record_webhook_attempts
UPDATE webhooks
SET state = :state, next_attempt_at_ms = coalesce(:next_attempt_at_ms, next_attempt_at_ms),
    lease_until_ms = NULL, last_status_code = :status_code, last_error = :error,
    delivered_at_ms = :delivered_at_ms,
    settled_at_ms = CASE WHEN :state IN ('delivered', 'dead') THEN :at_ms END,
    failed_at_ms = CASE WHEN :state <> 'delivered' THEN :at_ms ELSE failed_at_ms END
WHERE id = :id;

-- A claimed webhook handed back unattempted (its endpoint is backing off): the claim's
-- attempt is not counted.
-- name: defer_webhooks
UPDATE webhooks
SET next_attempt_at_ms = :until_ms, lease_until_ms = NULL, attempts = max(attempts - 1, 0)
WHERE id = :id AND state = 'pending';

-- An endpoint came back: its webhooks waiting for their next try are due now.
-- name: wake_webhooks
UPDATE webhooks SET next_attempt_at_ms = :now_ms
WHERE application_id = :application_id AND url = :url AND state = 'pending'
  AND lease_until_ms IS NULL AND next_attempt_at_ms > :now_ms;

-- A safety net (one process serialises everything here, so nothing should be left held).
-- name: release_settled_final_reports
UPDATE webhooks SET state = 'pending'
WHERE state = 'held'
  AND NOT EXISTS (SELECT 1 FROM webhooks p
                  WHERE p.dispatch_uuid = webhooks.dispatch_uuid AND p.state = 'pending');

-- A workflow's webhooks, oldest first.
-- name: list_webhooks
SELECT id, event_id, dispatch_uuid, application_id, kind, message_uuid, status, url, state,
       attempts, replays, CASE WHEN state = 'pending' THEN next_attempt_at_ms END
       AS next_attempt_at_ms, last_status_code, last_error, created_at_ms, delivered_at_ms
FROM webhooks WHERE dispatch_uuid = :dispatch_uuid ORDER BY id;

-- Webhook lists, newest first, from :before_id down (each shaped like list_webhooks);
-- :application_id and :state NULL mean any.
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
       attempts, replays, NULL AS next_attempt_at_ms, last_status_code, last_error,
       created_at_ms, delivered_at_ms
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
FROM webhooks WHERE event_id = :event_id;

-- Replay: the same body and webhook-id again, as a new delivery with a new retry period, to
-- the application's URL as it is now (`apps update` may have fixed what made it dead).
-- name: replay_webhook
UPDATE webhooks
SET state = 'pending', next_attempt_at_ms = :now_ms, attempts = 0, replays = replays + 1,
    replayed_at_ms = :now_ms, settled_at_ms = NULL, delivered_at_ms = NULL,
    lease_until_ms = NULL,
    url = coalesce(
        (SELECT CASE WHEN webhooks.kind = 'final_report'
                     THEN coalesce(a.final_report_url, a.status_url) ELSE a.status_url END
         FROM applications a WHERE a.application_id = webhooks.application_id),
        url)
WHERE id = :id AND state IN ('delivered', 'dead');

-- name: replay_dead_webhooks
UPDATE webhooks
SET state = 'pending', next_attempt_at_ms = :now_ms, attempts = 0, replays = replays + 1,
    replayed_at_ms = :now_ms, settled_at_ms = NULL, delivered_at_ms = NULL,
    lease_until_ms = NULL,
    url = coalesce(
        (SELECT CASE WHEN webhooks.kind = 'final_report'
                     THEN coalesce(a.final_report_url, a.status_url) ELSE a.status_url END
         FROM applications a WHERE a.application_id = webhooks.application_id),
        url)
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
    lease_until_ms = NULL,
    url = coalesce(
        (SELECT CASE WHEN webhooks.kind = 'final_report'
                     THEN coalesce(a.final_report_url, a.status_url) ELSE a.status_url END
         FROM applications a WHERE a.application_id = webhooks.application_id),
        url)
WHERE id IN (
    SELECT id FROM webhooks
    WHERE state = 'delivered'
      AND (:application_id IS NULL OR application_id = :application_id)
      AND (:dispatch_uuid IS NULL OR dispatch_uuid = :dispatch_uuid)
    LIMIT :limit);

-- How many a replay would take (its progress's total): the same selections, counted. The
-- dead are few among many delivered: their partial index counts them.
-- name: count_dead_webhooks
SELECT count(*) AS count FROM webhooks
WHERE state = 'dead'
  AND (:application_id IS NULL OR application_id = :application_id)
  AND (:dispatch_uuid IS NULL OR dispatch_uuid = :dispatch_uuid);

-- name: count_delivered_webhooks
SELECT count(*) AS count FROM webhooks
WHERE state = 'delivered'
  AND (:application_id IS NULL OR application_id = :application_id)
  AND (:dispatch_uuid IS NULL OR dispatch_uuid = :dispatch_uuid);

-- Activity (`opendispatch tail`) ----------------------------------------------------------------

-- Each reads rows at or after a position, oldest first: the workflows' ids (UUIDv7, so new
-- ones sort last: the primary key), the webhooks' ids (status and final report webhooks, one
-- per event: the primary key), and when a delivery failed (webhooks_failed, migration 0015).
-- :application_id NULL means every application. A webhook's `attempts` counts one being
-- made (its lease): a failure's is the attempts made before.
-- name: activity_workflows
SELECT dispatch_uuid, application_id, channels, created_at_ms FROM workflows
WHERE dispatch_uuid >= :position
  AND (:application_id IS NULL OR application_id = :application_id)
ORDER BY dispatch_uuid LIMIT :limit;

-- name: activity_webhooks
SELECT h.id, h.dispatch_uuid, h.application_id, h.kind, h.message_uuid, h.status,
       h.payload, h.created_at_ms, m.step, m.channel, m.provider
FROM webhooks h LEFT JOIN messages m ON m.message_uuid = h.message_uuid
WHERE h.id >= :position
  AND (:application_id IS NULL OR h.application_id = :application_id)
ORDER BY h.id LIMIT :limit;

-- name: activity_failed_webhooks
SELECT h.id, h.dispatch_uuid, h.application_id, h.kind, h.message_uuid, h.status, h.state,
       h.attempts - CASE WHEN h.lease_until_ms IS NULL THEN 0 ELSE 1 END AS attempts,
       h.last_status_code, h.last_error, h.next_attempt_at_ms, h.failed_at_ms, m.step
FROM webhooks h LEFT JOIN messages m ON m.message_uuid = h.message_uuid
WHERE h.failed_at_ms >= :position
  AND (:application_id IS NULL OR h.application_id = :application_id)
ORDER BY h.failed_at_ms, h.id LIMIT :limit;

-- Workflows that end without a final report (the Messages API v1's), by when their row last
-- changed: the partial index of ended workflows (retention's) walks only those.
-- name: activity_ended_workflows
SELECT dispatch_uuid, application_id, status, state_json, updated_at_ms FROM workflows
WHERE status <> 'in_progress' AND updated_at_ms >= :position AND template = :template
  AND (:application_id IS NULL OR application_id = :application_id)
ORDER BY updated_at_ms, dispatch_uuid LIMIT :limit;

-- Where following starts: after every webhook there is.
-- name: activity_webhooks_end
SELECT coalesce(max(id), 0) + 1 AS position FROM webhooks;

-- Recovery and retention -------------------------------------------------------------------------

-- The one serving process owns every queue: at start, leases left are a dead process's.
-- name: release_leases
UPDATE messages
SET send_state = 'unknown', lease_until_ms = NULL,
    last_error = 'outcome unknown: the server stopped while the provider had the request'
WHERE send_state = 'sending'
  AND application_id IN (SELECT application_id FROM applications WHERE live = 1);
UPDATE messages SET send_state = 'pending', lease_until_ms = NULL WHERE send_state = 'sending';
UPDATE webhooks SET lease_until_ms = NULL WHERE lease_until_ms IS NOT NULL;
UPDATE inbox SET lease_until_ms = NULL WHERE lease_until_ms IS NOT NULL;

-- Settled webhooks (delivered or dead) older than the retention, oldest first.
-- name: expire_webhooks
DELETE FROM webhooks WHERE id IN (
    SELECT id FROM webhooks
    WHERE settled_at_ms IS NOT NULL AND settled_at_ms < :before_ms
    ORDER BY settled_at_ms
    LIMIT :limit);

-- name: count_expired_webhooks
SELECT count(*) AS count FROM webhooks
WHERE settled_at_ms IS NOT NULL AND settled_at_ms < :before_ms;

-- Ended workflows older than the retention with no webhook left (those go by their own
-- rule), deleted with their messages and the statuses waiting for them. The same selection
-- in each statement (the workflows go last, so it does not change in between).
-- name: expire_workflows
DELETE FROM inbox WHERE message_uuid IN (
    SELECT message_uuid FROM messages WHERE dispatch_uuid IN (
        SELECT w.dispatch_uuid FROM workflows w
        WHERE w.status <> 'in_progress' AND w.updated_at_ms < :before_ms
          AND NOT EXISTS (SELECT 1 FROM webhooks h WHERE h.dispatch_uuid = w.dispatch_uuid)
        ORDER BY w.updated_at_ms LIMIT :limit));
DELETE FROM messages WHERE dispatch_uuid IN (
    SELECT w.dispatch_uuid FROM workflows w
    WHERE w.status <> 'in_progress' AND w.updated_at_ms < :before_ms
      AND NOT EXISTS (SELECT 1 FROM webhooks h WHERE h.dispatch_uuid = w.dispatch_uuid)
    ORDER BY w.updated_at_ms LIMIT :limit);
DELETE FROM workflows WHERE dispatch_uuid IN (
    SELECT w.dispatch_uuid FROM workflows w
    WHERE w.status <> 'in_progress' AND w.updated_at_ms < :before_ms
      AND NOT EXISTS (SELECT 1 FROM webhooks h WHERE h.dispatch_uuid = w.dispatch_uuid)
    ORDER BY w.updated_at_ms LIMIT :limit);

-- JWTs seen ----------------------------------------------------------------------------------

-- A token's first use inserts its row (1 row changed); a replay changes nothing (0), unless
-- the row left behind belongs to a token that has expired since.
-- name: remember_token
INSERT INTO seen_tokens (application_id, jti, expires_at_ms)
VALUES (:application_id, :jti, :expires_at_ms)
ON CONFLICT (application_id, jti) DO UPDATE SET expires_at_ms = excluded.expires_at_ms
WHERE seen_tokens.expires_at_ms < :now_ms;

-- name: forget_expired_tokens
DELETE FROM seen_tokens WHERE (application_id, jti) IN (
    SELECT application_id, jti FROM seen_tokens
    WHERE expires_at_ms < :now_ms
    ORDER BY expires_at_ms
    LIMIT :limit);

-- Operators and their sessions (the dashboard) -----------------------------------------------

-- name: insert_operator
INSERT INTO operators (name, token_hash, created_at_ms)
VALUES (:name, :token_hash, :now_ms)
ON CONFLICT (name) DO NOTHING;

-- name: list_operators
SELECT o.name, o.created_at_ms,
       (SELECT count(*) FROM operator_sessions s
        WHERE s.operator = o.name AND s.expires_at_ms > :now_ms) AS sessions
FROM operators o
ORDER BY o.name;

-- name: operator_token_hash
SELECT token_hash FROM operators WHERE name = :name;

-- Its sessions go with it (ON DELETE CASCADE).
-- name: delete_operator
DELETE FROM operators WHERE name = :name;

-- name: insert_operator_session
INSERT INTO operator_sessions (id_hash, operator, created_at_ms, expires_at_ms)
VALUES (:id_hash, :operator, :now_ms, :expires_at_ms);

-- name: operator_session
SELECT operator, expires_at_ms FROM operator_sessions
WHERE id_hash = :id_hash AND expires_at_ms > :now_ms;

-- name: delete_operator_session
DELETE FROM operator_sessions WHERE id_hash = :id_hash;

-- name: forget_expired_operator_sessions
DELETE FROM operator_sessions WHERE expires_at_ms <= :now_ms;

-- The dashboard's reads, across applications ---------------------------------------------------
--
-- A page of workflows is a walk down one index, newest first, between :after and :before
-- (dispatch_uuid bounds: a UUIDv7 begins with its creation time), that keeps the rows every
-- filter given accepts (NULL: any). Which index: the most selective filter's (see
-- store/browse.py); the others are checked on the rows walked, and a walk is bounded by
-- :after, which browse.py raises to the floor a `*_walk` query finds :budget rows down.
-- :channel and :recipient are terms of workflow_terms (migration 0013).

-- name: dashboard_workflows
SELECT w.dispatch_uuid, w.application_id, w.template, w.status, w.request_json,
       w.created_at_ms, w.updated_at_ms
FROM workflows w
WHERE w.dispatch_uuid < :before AND w.dispatch_uuid >= :after
  AND (:application_id IS NULL OR w.application_id = :application_id)
  AND (:status IS NULL OR w.status = :status)
  AND (:channel IS NULL OR EXISTS (SELECT 1 FROM workflow_terms t
                                   WHERE t.term = :channel AND t.dispatch_uuid = w.dispatch_uuid))
  AND (:recipient IS NULL OR EXISTS (SELECT 1 FROM workflow_terms t
                                     WHERE t.term = :recipient
                                       AND t.dispatch_uuid = w.dispatch_uuid))
ORDER BY w.dispatch_uuid DESC
LIMIT :limit;

-- name: dashboard_workflows_walk
SELECT min(dispatch_uuid) AS floor, count(*) AS walked FROM (
    SELECT dispatch_uuid FROM workflows
    WHERE dispatch_uuid < :before AND dispatch_uuid >= :after
    ORDER BY dispatch_uuid DESC
    LIMIT :budget);

-- name: dashboard_workflows_of_application
SELECT w.dispatch_uuid, w.application_id, w.template, w.status, w.request_json,
       w.created_at_ms, w.updated_at_ms
FROM workflows w
WHERE w.application_id = :application_id
  AND w.dispatch_uuid < :before AND w.dispatch_uuid >= :after
  AND (:status IS NULL OR w.status = :status)
  AND (:channel IS NULL OR EXISTS (SELECT 1 FROM workflow_terms t
                                   WHERE t.term = :channel AND t.dispatch_uuid = w.dispatch_uuid))
  AND (:recipient IS NULL OR EXISTS (SELECT 1 FROM workflow_terms t
                                     WHERE t.term = :recipient
                                       AND t.dispatch_uuid = w.dispatch_uuid))
ORDER BY w.dispatch_uuid DESC
LIMIT :limit;

-- name: dashboard_workflows_of_application_walk
SELECT min(dispatch_uuid) AS floor, count(*) AS walked FROM (
    SELECT dispatch_uuid FROM workflows
    WHERE application_id = :application_id
      AND dispatch_uuid < :before AND dispatch_uuid >= :after
    ORDER BY dispatch_uuid DESC
    LIMIT :budget);

-- A status other than `completed`, down workflows_not_completed (its condition is repeated
-- so that the planner may use that partial index).
-- name: dashboard_workflows_of_status
SELECT w.dispatch_uuid, w.application_id, w.template, w.status, w.request_json,
       w.created_at_ms, w.updated_at_ms
FROM workflows w
WHERE w.status = :status AND w.status <> 'completed'
  AND w.dispatch_uuid < :before AND w.dispatch_uuid >= :after
  AND (:application_id IS NULL OR w.application_id = :application_id)
  AND (:channel IS NULL OR EXISTS (SELECT 1 FROM workflow_terms t
                                   WHERE t.term = :channel AND t.dispatch_uuid = w.dispatch_uuid))
  AND (:recipient IS NULL OR EXISTS (SELECT 1 FROM workflow_terms t
                                     WHERE t.term = :recipient
                                       AND t.dispatch_uuid = w.dispatch_uuid))
ORDER BY w.dispatch_uuid DESC
LIMIT :limit;

-- name: dashboard_workflows_of_status_walk
SELECT min(dispatch_uuid) AS floor, count(*) AS walked FROM (
    SELECT dispatch_uuid FROM workflows
    WHERE status = :status AND status <> 'completed'
      AND dispatch_uuid < :before AND dispatch_uuid >= :after
    ORDER BY dispatch_uuid DESC
    LIMIT :budget);

-- One term's workflows (a recipient, a channel), down its range of workflow_terms.
-- name: dashboard_workflows_of_term
SELECT w.dispatch_uuid, w.application_id, w.template, w.status, w.request_json,
       w.created_at_ms, w.updated_at_ms
FROM workflow_terms d JOIN workflows w ON w.dispatch_uuid = d.dispatch_uuid
WHERE d.term = :term AND d.dispatch_uuid < :before AND d.dispatch_uuid >= :after
  AND (:application_id IS NULL OR d.application_id = :application_id)
  AND (:status IS NULL OR w.status = :status)
  AND (:channel IS NULL OR EXISTS (SELECT 1 FROM workflow_terms t
                                   WHERE t.term = :channel AND t.dispatch_uuid = d.dispatch_uuid))
  AND (:recipient IS NULL OR EXISTS (SELECT 1 FROM workflow_terms t
                                     WHERE t.term = :recipient
                                       AND t.dispatch_uuid = d.dispatch_uuid))
ORDER BY d.dispatch_uuid DESC
LIMIT :limit;

-- name: dashboard_workflows_of_term_walk
SELECT min(dispatch_uuid) AS floor, count(*) AS walked FROM (
    SELECT dispatch_uuid FROM workflow_terms
    WHERE term = :term AND dispatch_uuid < :before AND dispatch_uuid >= :after
    ORDER BY dispatch_uuid DESC
    LIMIT :budget);

-- Dead webhooks across applications, newest first (webhooks_dead_everywhere).
-- name: dashboard_dead_webhooks
SELECT id, event_id, dispatch_uuid, application_id, kind, message_uuid, status, url, state,
       attempts, replays, NULL AS next_attempt_at_ms, last_status_code, last_error,
       created_at_ms, delivered_at_ms
FROM webhooks
WHERE state = 'dead' AND id < :before_id
  AND (:application_id IS NULL OR application_id = :application_id)
ORDER BY id DESC LIMIT :limit;

-- Webhooks still being retried after a failed attempt (webhooks_failing).
-- name: dashboard_failing_webhooks
SELECT id, event_id, dispatch_uuid, application_id, kind, message_uuid, status, url, state,
       attempts, replays, next_attempt_at_ms, last_status_code, last_error, created_at_ms,
       delivered_at_ms
FROM webhooks
WHERE state = 'pending' AND last_error IS NOT NULL AND id < :before_id
  AND (:application_id IS NULL OR application_id = :application_id)
ORDER BY id DESC LIMIT :limit;

-- Workflows accepted in each period between consecutive :bounds (dispatch_uuid prefixes),
-- and how many of them are in each status but `completed` (the rest): each a range count on
-- an index, never a read of the rows.
-- name: dashboard_outcomes
SELECT lo.value AS since,
       (SELECT count(*) FROM workflows
        WHERE dispatch_uuid >= lo.value AND dispatch_uuid < hi.value) AS accepted,
       (SELECT count(*) FROM workflows
        WHERE status = 'in_progress' AND status <> 'completed'
          AND dispatch_uuid >= lo.value AND dispatch_uuid < hi.value) AS in_progress,
       (SELECT count(*) FROM workflows
        WHERE status = 'error' AND status <> 'completed'
          AND dispatch_uuid >= lo.value AND dispatch_uuid < hi.value) AS error,
       (SELECT count(*) FROM workflows
        WHERE status = 'cancelled' AND status <> 'completed'
          AND dispatch_uuid >= lo.value AND dispatch_uuid < hi.value) AS cancelled
FROM json_each(:bounds) AS lo JOIN json_each(:bounds) AS hi ON hi.key = lo.key + 1
ORDER BY lo.value;

-- Per channel, the messages of workflows accepted since :since (message ids are UUIDv7s
-- chosen at accept time) and how many of them were followed by the workflow's next message.
-- name: dashboard_failover_by_channel
SELECT m.channel, count(*) AS sent,
       sum(CASE WHEN EXISTS (SELECT 1 FROM messages n
                             WHERE n.dispatch_uuid = m.dispatch_uuid AND n.step = m.step + 1)
           THEN 1 ELSE 0 END) AS failed_over
FROM messages m
WHERE m.message_uuid >= :since
GROUP BY m.channel
ORDER BY m.channel;

-- What is waiting, each count from a partial index (named where the planner, without
-- statistics, would rather scan a covering index of every webhook).
-- name: dashboard_queues
SELECT (SELECT count(*) FROM messages WHERE send_state = 'pending') AS sends_pending,
       (SELECT count(*) FROM messages WHERE send_state = 'sending') AS sends_in_flight,
       (SELECT count(*) FROM workflows WHERE due_at_ms IS NOT NULL) AS timers,
       (SELECT count(*) FROM webhooks
        WHERE state = 'pending' AND lease_until_ms IS NULL) AS webhooks_waiting,
       (SELECT count(*) FROM webhooks WHERE lease_until_ms IS NOT NULL) AS webhooks_in_flight,
       (SELECT count(*) FROM webhooks INDEXED BY webhooks_held
        WHERE state = 'held') AS webhooks_held,
       (SELECT count(*) FROM webhooks
        WHERE state = 'pending' AND last_error IS NOT NULL) AS webhooks_failing,
       (SELECT count(*) FROM webhooks INDEXED BY webhooks_dead_everywhere
        WHERE state = 'dead') AS webhooks_dead,
       (SELECT count(*) FROM inbox) AS statuses_waiting;

-- Idempotency keys -------------------------------------------------------------------------------

-- A key's first request inserts its row with the workflow it creates; a later one finds the
-- row and gets it back unchanged, unless the row is older than :window_ms (24 hours) before
-- the new request: then the key counts as forgotten and the new request takes it over. Each
-- row comes back as it is now: the caller's own dispatch_uuid means its request claimed the
-- key. Runs inside the group commit's transaction, before the workflow is written, so two
-- requests with one key in one batch see each other in order.
-- name: claim_idempotency_keys
INSERT INTO idempotency_keys AS k
    (application_id, idempotency_key, request_hash, dispatch_uuid, created_at_ms)
VALUES (:application_id, :idempotency_key, :request_hash, :dispatch_uuid, :created_at_ms)
ON CONFLICT (application_id, idempotency_key) DO UPDATE
SET request_hash = CASE WHEN k.created_at_ms < excluded.created_at_ms - :window_ms
                        THEN excluded.request_hash ELSE k.request_hash END,
    dispatch_uuid = CASE WHEN k.created_at_ms < excluded.created_at_ms - :window_ms
                         THEN excluded.dispatch_uuid ELSE k.dispatch_uuid END,
    created_at_ms = CASE WHEN k.created_at_ms < excluded.created_at_ms - :window_ms
                         THEN excluded.created_at_ms ELSE k.created_at_ms END
RETURNING application_id, idempotency_key, request_hash, dispatch_uuid;

-- Keys older than the window, oldest first.
-- name: forget_idempotency_keys
DELETE FROM idempotency_keys WHERE (application_id, idempotency_key) IN (
    SELECT application_id, idempotency_key FROM idempotency_keys
    WHERE created_at_ms < :before_ms
    ORDER BY created_at_ms
    LIMIT :limit);
