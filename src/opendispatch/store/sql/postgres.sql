-- The store's named queries on PostgreSQL (see store/named_queries.py). sqlite.sql has the
-- same names with the same named parameters (:name) and the same result columns: the store
-- runs either through its connector (tests/unit/test_named_queries.py keeps them matched).
-- A parameter that is a list is an array here; `execute_many` binds each column of its rows
-- as one array, so a query it runs unnests them and writes all rows in one statement.
--
-- Several processes share these tables, so unlike on SQLite:
-- - claims lock the rows they take with FOR UPDATE SKIP LOCKED, so concurrent claimers pass
--   each other by instead of waiting, and stamp a lease (:lease_owner); a lease that ran out
--   is claimable again (the process that held it is presumed dead);
-- - writers of pending or held webhooks lock them in ascending id order (no deadlocks; see
--   migration 0005);
-- - times are always the caller's (:now_ms), never the database's clock, so a test's driven
--   clock means the same thing here as on SQLite.

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
SET name = coalesce(:name::text, name), status_url = coalesce(:status_url::text, status_url),
    final_report_url = coalesce(:final_report_url::text, final_report_url)
WHERE application_id = :application_id AND deleted_at_ms IS NULL;

-- Webhooks not delivered yet (pending, being attempted, or held) go to the application's URLs
-- as they are now: status webhooks to :status_url, final reports to :final_report_url (the
-- status URL when it has none). Those it moves are due at once: the new receiver has not
-- failed yet. Each branch walks its own small index (due, leased, held), never the
-- application's delivered history; locked in id order, as every writer of pending webhooks
-- does (migration 0005).
-- name: repoint_webhooks
WITH ordered AS MATERIALIZED (
    SELECT id FROM webhooks WHERE id IN (
        SELECT id FROM webhooks
        WHERE application_id = :application_id AND state = 'pending' AND lease_until_ms IS NULL
        UNION ALL
        SELECT id FROM webhooks
        WHERE lease_until_ms IS NOT NULL AND state = 'pending' AND application_id = :application_id
        UNION ALL
        SELECT id FROM webhooks WHERE state = 'held' AND application_id = :application_id)
    ORDER BY id
    FOR UPDATE
)
UPDATE webhooks
SET url = CASE WHEN kind = 'final_report' THEN :final_report_url::text ELSE :status_url::text END,
    next_attempt_at_ms = least(next_attempt_at_ms, :now_ms::bigint)
WHERE id IN (SELECT id FROM ordered)
  AND url <> CASE WHEN kind = 'final_report' THEN :final_report_url::text
                  ELSE :status_url::text END;

-- A new API secret (its hash). The one it replaces stays good until :previous_expires_at_ms,
-- or not at all when that is NULL; a secret replaced earlier is forgotten either way.
-- name: rotate_api_secret
UPDATE accounts
SET previous_secret_hash = CASE WHEN :previous_expires_at_ms::bigint IS NULL THEN NULL
                                ELSE api_secret_hash END,
    previous_secret_expires_at_ms = :previous_expires_at_ms::bigint,
    api_secret_hash = :api_secret_hash
WHERE api_key = (SELECT api_key FROM applications
                 WHERE application_id = :application_id AND deleted_at_ms IS NULL);

-- Deleting an application: one transaction of these, in this order (see
-- DatabaseStore.delete_application). Found even when deleted already (its data kept), so
-- that it can still be purged.
-- name: find_application_to_delete
SELECT application_id, api_key, deleted_at_ms FROM applications
WHERE application_id = :application_id;

-- First, so that a workflow being created for it waits for this transaction and then sees
-- the application gone (create_workflows share-locks its row).
-- name: mark_application_deleted
UPDATE applications SET deleted_at_ms = :now_ms
WHERE application_id = :application_id AND deleted_at_ms IS NULL;

-- Its running workflows end in `error`, at once, without a final report (nobody is left to
-- receive it); their deadlines go. Every open workflow has a deadline, so the deadline index
-- finds them all. The engine's state says the same. The version moves on, so a transition
-- another process decided on the old state is not written (it is decided again, and finds
-- the application gone).
-- name: end_application_workflows
UPDATE workflows
SET status = 'error', due_at_ms = NULL, updated_at_ms = :now_ms, version = version + 1,
    state_json = (state_json::jsonb
                  || jsonb_build_object('status', 'error', 'due_at_ms', NULL,
                                        'ended_at_ms', :now_ms::bigint))::text
WHERE due_at_ms IS NOT NULL AND application_id = :application_id;

-- Sends not made yet are never made; one in a provider's hands finishes (its outcome is
-- recorded, nothing follows from it) but is never retried (its lease is no one's).
-- name: cancel_application_sends
UPDATE messages
SET send_state = 'cancelled', lease_until_ms = NULL, lease_owner = NULL,
    last_error = 'cancelled: the application was deleted'
WHERE message_uuid IN (
    SELECT message_uuid FROM messages
    WHERE send_state = 'pending' AND application_id = :application_id
    UNION ALL
    SELECT message_uuid FROM messages
    WHERE send_state = 'sending' AND application_id = :application_id);

-- Webhooks not delivered yet are dropped (the same selection as repoint_webhooks, locked in
-- id order). One being attempted right now may still arrive; its outcome then updates
-- nothing.
-- name: drop_application_webhooks
WITH ordered AS MATERIALIZED (
    SELECT id FROM webhooks WHERE id IN (
        SELECT id FROM webhooks
        WHERE application_id = :application_id AND state = 'pending' AND lease_until_ms IS NULL
        UNION ALL
        SELECT id FROM webhooks
        WHERE lease_until_ms IS NOT NULL AND state = 'pending' AND application_id = :application_id
        UNION ALL
        SELECT id FROM webhooks WHERE state = 'held' AND application_id = :application_id)
    ORDER BY id
    FOR UPDATE
)
DELETE FROM webhooks WHERE id IN (SELECT id FROM ordered);

-- Its provider routes are configuration, not history: they go, so that the provider
-- accounts they name can be removed.
-- name: delete_application_routes
DELETE FROM provider_routes WHERE application_id = :application_id;

-- name: wipe_application_credentials
UPDATE accounts
SET api_secret_hash = '', signature_secret = '', previous_secret_hash = NULL,
    previous_secret_expires_at_ms = NULL
WHERE api_key = (SELECT api_key FROM applications WHERE application_id = :application_id);

-- `--purge`: its rows go too. Its workflows are locked first: a transition another process
-- is writing finishes before the deletes below look (and see what it wrote), and one that
-- comes later finds no workflow.
-- name: lock_application_workflows
SELECT dispatch_uuid FROM workflows WHERE application_id = :application_id
ORDER BY dispatch_uuid
FOR UPDATE;

-- name: purge_application_inbox
DELETE FROM inbox WHERE message_uuid IN (
    SELECT m.message_uuid FROM workflows w JOIN messages m ON m.dispatch_uuid = w.dispatch_uuid
    WHERE w.application_id = :application_id);

-- name: purge_application_messages
DELETE FROM messages WHERE dispatch_uuid IN (
    SELECT dispatch_uuid FROM workflows WHERE application_id = :application_id);

-- name: purge_application_webhooks
WITH ordered AS MATERIALIZED (
    SELECT id FROM webhooks WHERE application_id = :application_id ORDER BY id FOR UPDATE
)
DELETE FROM webhooks WHERE id IN (SELECT id FROM ordered);

-- name: purge_application_workflows
DELETE FROM workflows WHERE application_id = :application_id;

-- name: purge_application_tokens
DELETE FROM seen_tokens WHERE application_id = :application_id;

-- name: purge_application_idempotency_keys
DELETE FROM idempotency_keys WHERE application_id = :application_id;

-- The application, then its account (which the application refers to; checked at the end
-- of the statement).
-- name: purge_application
WITH application AS (
    DELETE FROM applications WHERE application_id = :application_id
)
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
-- A submitted text may hold the escape `\u0000`, which PostgreSQL cannot turn into text while
-- it reads JSON: it becomes `\u0001` first (still valid JSON whatever precedes it; only
-- `to.type` is read).
-- name: list_workflows
SELECT dispatch_uuid, application_id, template, status, request_json, created_at_ms, updated_at_ms
FROM workflows
WHERE application_id = :application_id AND dispatch_uuid < :before AND dispatch_uuid >= :after
  AND (:channel::text IS NULL OR strpos(coalesce(channels, (
          SELECT ',' || string_agg(step -> 'to' ->> 'type', ',') || ','
          FROM json_array_elements(
              replace(request_json, E'\\u0000', E'\\u0001')::json -> 'workflow') AS step)),
          :channel) > 0)
ORDER BY dispatch_uuid DESC
LIMIT :limit;

-- The same for one status, down workflows_by_status (a list of several statuses runs this
-- once per status and merges the pages).
-- name: list_workflows_of_status
SELECT dispatch_uuid, application_id, template, status, request_json, created_at_ms, updated_at_ms
FROM workflows
WHERE application_id = :application_id AND status = :status
  AND dispatch_uuid < :before AND dispatch_uuid >= :after
  AND (:channel::text IS NULL OR strpos(coalesce(channels, (
          SELECT ',' || string_agg(step -> 'to' ->> 'type', ',') || ','
          FROM json_array_elements(
              replace(request_json, E'\\u0000', E'\\u0001')::json -> 'workflow') AS step)),
          :channel) > 0)
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

-- Two index walks, each locking what it takes: due pending sends (messages_due), and sends
-- whose claimer's lease ran out (messages_leased). MATERIALIZED keeps each walk (and its row
-- locks) to exactly one run. A send of a live application whose lease ran out may have
-- reached its provider, which takes no idempotency key: it is settled `unknown` instead
-- (`in_doubt`), never claimed again (see `Unknown` in providers/base.py).
-- name: claim_sends
WITH due AS MATERIALIZED (
    SELECT message_uuid, next_attempt_at_ms AS due_at_ms FROM messages
    WHERE send_state = 'pending' AND next_attempt_at_ms <= :now_ms
    ORDER BY next_attempt_at_ms
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
), expired AS MATERIALIZED (
    SELECT message_uuid, lease_until_ms AS due_at_ms,
           application_id IN (SELECT application_id FROM applications WHERE live) AS live
    FROM messages
    WHERE send_state = 'sending' AND lease_until_ms <= :now_ms
    ORDER BY lease_until_ms
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
), in_doubt AS (
    UPDATE messages m
    SET send_state = 'unknown', lease_until_ms = NULL, lease_owner = NULL,
        last_error = 'outcome unknown: the process sending it stopped before an answer'
    WHERE m.message_uuid IN (SELECT message_uuid FROM expired WHERE live)
)
UPDATE messages m
SET send_state = 'sending', lease_until_ms = :lease_until_ms, lease_owner = :lease_owner,
    attempts = m.attempts + 1
WHERE m.message_uuid IN (
    SELECT c.message_uuid FROM (
        SELECT message_uuid, due_at_ms FROM due
        UNION ALL
        SELECT message_uuid, due_at_ms FROM expired WHERE NOT live) AS c
    ORDER BY c.due_at_ms
    LIMIT :limit)
RETURNING m.message_uuid, m.dispatch_uuid, m.application_id, m.step, m.channel, m.provider,
          m.payload_json, m.attempts, m.created_at_ms, m.next_attempt_at_ms;

-- Only the lease's holder may put its send back: if its lease ran out and another process
-- claimed the send meanwhile, that one's claim stands (on SQLite the same guard is the
-- 'sending' state, which the lease's expiry resets).
-- name: retry_send
UPDATE messages
SET send_state = 'pending', next_attempt_at_ms = :next_attempt_at_ms, lease_until_ms = NULL,
    lease_owner = NULL, last_error = :error, provider = coalesce(nullif(:provider, ''), provider)
WHERE message_uuid = :message_uuid AND send_state = 'sending' AND lease_owner = :lease_owner;

-- The request went out and no answer came back: never sent again (its callbacks, or its
-- step's deadline, settle the step).
-- name: send_outcome_unknown
UPDATE messages
SET send_state = 'unknown', lease_until_ms = NULL, lease_owner = NULL, last_error = :error,
    provider = :provider
WHERE message_uuid = :message_uuid AND send_state = 'sending' AND lease_owner = :lease_owner;

-- A claimed send handed back untried (its providers were all paced or resting): no attempt.
-- name: defer_send
UPDATE messages
SET send_state = 'pending', next_attempt_at_ms = :next_attempt_at_ms, lease_until_ms = NULL,
    lease_owner = NULL, attempts = attempts - 1, last_error = :error
WHERE message_uuid = :message_uuid AND send_state = 'sending' AND lease_owner = :lease_owner;

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
SELECT least(
    (SELECT min(next_attempt_at_ms) FROM messages WHERE send_state = 'pending'),
    (SELECT min(lease_until_ms) FROM messages WHERE send_state = 'sending')) AS due_at_ms;

-- Timers ---------------------------------------------------------------------------------------

-- Not a claim: every process may see the same due workflow; the version check in `apply`
-- makes the second firing find the state the first one left (no longer due).
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
SELECT * FROM unnest(:message_uuid::text[], :status::text[], :error_code::integer[],
                     :error_reason::text[], :price::text[], :due_at_ms::bigint[],
                     :occurred_at_ms::bigint[], :provider_message_id::text[])
ON CONFLICT DO NOTHING;

-- name: claim_inbox
WITH due AS MATERIALIZED (
    SELECT id, due_at_ms FROM inbox
    WHERE lease_until_ms IS NULL AND due_at_ms <= :now_ms
    ORDER BY due_at_ms
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
), expired AS MATERIALIZED (
    SELECT id, due_at_ms FROM inbox
    WHERE lease_until_ms <= :now_ms
    ORDER BY lease_until_ms
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
UPDATE inbox i SET lease_until_ms = :lease_until_ms, lease_owner = :lease_owner
WHERE i.id IN (
    SELECT c.id FROM (SELECT * FROM due UNION ALL SELECT * FROM expired) AS c
    ORDER BY c.due_at_ms
    LIMIT :limit)
RETURNING i.id, i.message_uuid, i.status, i.error_code, i.error_reason, i.price, i.due_at_ms,
          i.occurred_at_ms;

-- name: next_inbox_due
SELECT least(
    (SELECT min(due_at_ms) FROM inbox WHERE lease_until_ms IS NULL),
    (SELECT min(lease_until_ms) FROM inbox WHERE lease_until_ms IS NOT NULL)) AS due_at_ms;

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
WITH due AS MATERIALIZED (
    SELECT w.id, w.next_attempt_at_ms AS due_at_ms
    FROM applications a
    CROSS JOIN LATERAL (
        SELECT id, next_attempt_at_ms FROM webhooks
        WHERE application_id = a.application_id AND state = 'pending'
          AND lease_until_ms IS NULL AND next_attempt_at_ms <= :now_ms
        ORDER BY next_attempt_at_ms
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ) AS w
    WHERE a.application_id <> ALL (:excluded::text[])
), expired AS MATERIALIZED (
    SELECT id, lease_until_ms AS due_at_ms FROM webhooks
    WHERE lease_until_ms <= :now_ms AND state = 'pending'
      AND application_id <> ALL (:excluded::text[])
    ORDER BY lease_until_ms
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
UPDATE webhooks w
SET lease_until_ms = :lease_until_ms, lease_owner = :lease_owner, attempts = w.attempts + 1
WHERE w.id IN (
    SELECT c.id FROM (SELECT * FROM due UNION ALL SELECT * FROM expired) AS c
    ORDER BY c.due_at_ms
    LIMIT :limit)
RETURNING w.id, w.event_id, w.dispatch_uuid, w.application_id, w.kind, w.url, w.payload,
          w.attempts, w.created_at_ms, w.replays,
          coalesce(w.replayed_at_ms, w.created_at_ms) AS retry_from_ms;

-- The earliest time a webhook becomes claimable: the first of each application's range, or
-- the first lease to run out.
-- name: next_webhook_due
SELECT least(
    (SELECT min(w.next_attempt_at_ms)
     FROM applications a
     CROSS JOIN LATERAL (
         SELECT next_attempt_at_ms FROM webhooks
         WHERE application_id = a.application_id AND state = 'pending'
           AND lease_until_ms IS NULL
         ORDER BY next_attempt_at_ms
         LIMIT 1) AS w),
    (SELECT min(lease_until_ms) FROM webhooks WHERE lease_until_ms IS NOT NULL)) AS due_at_ms;

-- Outcomes of delivery attempts (one row each), and the release of the final reports they
-- were the last to wait for: a function, for why see migration 0005.
-- name: record_webhook_attempts
SELECT record_webhook_attempts(:id::bigint[], :state::text[], :next_attempt_at_ms::bigint[],
                               :status_code::integer[], :error::text[],
                               :delivered_at_ms::bigint[], :at_ms::bigint[]);

-- A claimed webhook handed back unattempted (its endpoint is backing off): the claim's
-- attempt is not counted. Locked in id order first, as every writer of pending webhooks does.
-- name: defer_webhooks
WITH deferral AS (
    SELECT * FROM unnest(:id::bigint[], :until_ms::bigint[], :lease_owner::text[])
             AS d (id, until_ms, lease_owner)
), ordered AS MATERIALIZED (
    SELECT id FROM webhooks WHERE id IN (SELECT id FROM deferral) ORDER BY id FOR UPDATE
)
UPDATE webhooks w
SET next_attempt_at_ms = d.until_ms, lease_until_ms = NULL, lease_owner = NULL,
    attempts = greatest(w.attempts - 1, 0)
FROM deferral d
WHERE w.id = d.id AND w.state = 'pending' AND w.lease_owner = d.lease_owner
  AND w.id IN (SELECT id FROM ordered);

-- An endpoint came back: its webhooks waiting for their next try are due now.
-- name: wake_webhooks
WITH ordered AS MATERIALIZED (
    SELECT id FROM webhooks
    WHERE application_id = :application_id AND url = :url AND state = 'pending'
      AND lease_until_ms IS NULL AND next_attempt_at_ms > :now_ms
    ORDER BY id
    FOR UPDATE
)
UPDATE webhooks SET next_attempt_at_ms = :now_ms WHERE id IN (SELECT id FROM ordered);

-- Held final reports whose workflow has nothing left to deliver. The release with each
-- recorded attempt does this for its own workflows; this is a safety net (for reports held by
-- an earlier version, say), which the race-free release should leave with nothing to do.
-- name: release_settled_final_reports
WITH settled AS MATERIALIZED (
    SELECT h.id FROM webhooks h
    WHERE h.state = 'held'
      AND NOT EXISTS (SELECT 1 FROM webhooks p
                      WHERE p.dispatch_uuid = h.dispatch_uuid AND p.state = 'pending')
    ORDER BY h.id
    FOR UPDATE SKIP LOCKED
)
UPDATE webhooks SET state = 'pending' WHERE id IN (SELECT id FROM settled);

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
  AND (:application_id::text IS NULL OR application_id = :application_id)
  AND (:state::text IS NULL OR state = :state)
ORDER BY id DESC LIMIT :limit;

-- name: list_webhooks_of_application
SELECT id, event_id, dispatch_uuid, application_id, kind, message_uuid, status, url, state,
       attempts, replays, CASE WHEN state = 'pending' THEN next_attempt_at_ms END
       AS next_attempt_at_ms, last_status_code, last_error, created_at_ms, delivered_at_ms
FROM webhooks
WHERE application_id = :application_id AND id < :before_id
  AND (:state::text IS NULL OR state = :state)
ORDER BY id DESC LIMIT :limit;

-- Dead letters are few among many delivered: their own partial index finds them.
-- name: list_dead_webhooks_of_application
SELECT id, event_id, dispatch_uuid, application_id, kind, message_uuid, status, url, state,
       attempts, replays, NULL::bigint AS next_attempt_at_ms, last_status_code, last_error,
       created_at_ms, delivered_at_ms
FROM webhooks
WHERE application_id = :application_id AND state = 'dead' AND id < :before_id
ORDER BY id DESC LIMIT :limit;

-- name: list_webhooks_everywhere
SELECT id, event_id, dispatch_uuid, application_id, kind, message_uuid, status, url, state,
       attempts, replays, CASE WHEN state = 'pending' THEN next_attempt_at_ms END
       AS next_attempt_at_ms, last_status_code, last_error, created_at_ms, delivered_at_ms
FROM webhooks
WHERE id < :before_id AND (:state::text IS NULL OR state = :state)
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
    lease_until_ms = NULL, lease_owner = NULL,
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
    lease_until_ms = NULL, lease_owner = NULL,
    url = coalesce(
        (SELECT CASE WHEN webhooks.kind = 'final_report'
                     THEN coalesce(a.final_report_url, a.status_url) ELSE a.status_url END
         FROM applications a WHERE a.application_id = webhooks.application_id),
        url)
WHERE id IN (
    SELECT id FROM webhooks
    WHERE state = 'dead'
      AND (:application_id::text IS NULL OR application_id = :application_id)
      AND (:dispatch_uuid::text IS NULL OR dispatch_uuid = :dispatch_uuid)
    LIMIT :limit
    FOR UPDATE SKIP LOCKED);

-- name: replay_delivered_webhooks
UPDATE webhooks
SET state = 'pending', next_attempt_at_ms = :now_ms, attempts = 0, replays = replays + 1,
    replayed_at_ms = :now_ms, settled_at_ms = NULL, delivered_at_ms = NULL,
    lease_until_ms = NULL, lease_owner = NULL,
    url = coalesce(
        (SELECT CASE WHEN webhooks.kind = 'final_report'
                     THEN coalesce(a.final_report_url, a.status_url) ELSE a.status_url END
         FROM applications a WHERE a.application_id = webhooks.application_id),
        url)
WHERE id IN (
    SELECT id FROM webhooks
    WHERE state = 'delivered'
      AND (:application_id::text IS NULL OR application_id = :application_id)
      AND (:dispatch_uuid::text IS NULL OR dispatch_uuid = :dispatch_uuid)
    LIMIT :limit
    FOR UPDATE SKIP LOCKED);

-- How many a replay would take (its progress's total): the same selections, counted. The
-- dead are few among many delivered: their partial index counts them.
-- name: count_dead_webhooks
SELECT count(*) AS count FROM webhooks
WHERE state = 'dead'
  AND (:application_id::text IS NULL OR application_id = :application_id)
  AND (:dispatch_uuid::text IS NULL OR dispatch_uuid = :dispatch_uuid);

-- name: count_delivered_webhooks
SELECT count(*) AS count FROM webhooks
WHERE state = 'delivered'
  AND (:application_id::text IS NULL OR application_id = :application_id)
  AND (:dispatch_uuid::text IS NULL OR dispatch_uuid = :dispatch_uuid);

-- Activity (`opendispatch tail`) ----------------------------------------------------------------

-- Each reads rows at or after a position, oldest first: the workflows' ids (UUIDv7, so new
-- ones sort last: the primary key), the webhooks' ids (status and final report webhooks, one
-- per event: the primary key), and when a delivery failed (webhooks_failed, migration 0015).
-- :application_id NULL means every application. A webhook's `attempts` counts one being
-- made (its lease): a failure's is the attempts made before.
-- name: activity_workflows
SELECT dispatch_uuid, application_id, channels, created_at_ms FROM workflows
WHERE dispatch_uuid >= :position::text
  AND (:application_id::text IS NULL OR application_id = :application_id)
ORDER BY dispatch_uuid LIMIT :limit;

-- name: activity_webhooks
SELECT h.id, h.dispatch_uuid, h.application_id, h.kind, h.message_uuid, h.status,
       h.payload, h.created_at_ms, m.step, m.channel, m.provider
FROM webhooks h LEFT JOIN messages m ON m.message_uuid = h.message_uuid
WHERE h.id >= :position::bigint
  AND (:application_id::text IS NULL OR h.application_id = :application_id)
ORDER BY h.id LIMIT :limit;

-- name: activity_failed_webhooks
SELECT h.id, h.dispatch_uuid, h.application_id, h.kind, h.message_uuid, h.status, h.state,
       h.attempts - CASE WHEN h.lease_until_ms IS NULL THEN 0 ELSE 1 END AS attempts,
       h.last_status_code, h.last_error, h.next_attempt_at_ms, h.failed_at_ms, m.step
FROM webhooks h LEFT JOIN messages m ON m.message_uuid = h.message_uuid
WHERE h.failed_at_ms >= :position::bigint
  AND (:application_id::text IS NULL OR h.application_id = :application_id)
ORDER BY h.failed_at_ms, h.id LIMIT :limit;

-- Workflows that end without a final report (the Messages API v1's), by when their row last
-- changed: the partial index of ended workflows (retention's) walks only those.
-- name: activity_ended_workflows
SELECT dispatch_uuid, application_id, status, state_json, updated_at_ms FROM workflows
WHERE status <> 'in_progress' AND updated_at_ms >= :position::bigint
  AND template = :template::text
  AND (:application_id::text IS NULL OR application_id = :application_id)
ORDER BY updated_at_ms, dispatch_uuid LIMIT :limit;

-- Where following starts: after every webhook there is.
-- name: activity_webhooks_end
SELECT coalesce(max(id), 0) + 1 AS position FROM webhooks;

-- Recovery and retention -------------------------------------------------------------------------

-- Claims this process holds (by its lease owner name) go back: the others need not wait for
-- the leases to run out. On SQLite the one serving process releases every lease at start.
-- name: release_leases
WITH sends AS (
    UPDATE messages
    SET send_state = CASE WHEN application_id IN (SELECT application_id FROM applications
                                                  WHERE live)
                          THEN 'unknown' ELSE 'pending' END,
        last_error = CASE WHEN application_id IN (SELECT application_id FROM applications
                                                  WHERE live)
                          THEN 'outcome unknown: the server stopped while the provider had '
                               || 'the request'
                          ELSE last_error END,
        lease_until_ms = NULL, lease_owner = NULL
    WHERE send_state = 'sending' AND lease_owner = :lease_owner
), webhooks_released AS (
    UPDATE webhooks SET lease_until_ms = NULL, lease_owner = NULL
    WHERE lease_owner = :lease_owner
)
UPDATE inbox SET lease_until_ms = NULL, lease_owner = NULL WHERE lease_owner = :lease_owner;

-- Settled webhooks (delivered or dead) older than the retention, oldest first.
-- name: expire_webhooks
DELETE FROM webhooks WHERE id IN (
    SELECT id FROM webhooks
    WHERE settled_at_ms IS NOT NULL AND settled_at_ms < :before_ms
    ORDER BY settled_at_ms
    LIMIT :limit
    FOR UPDATE SKIP LOCKED);

-- name: count_expired_webhooks
SELECT count(*) AS count FROM webhooks
WHERE settled_at_ms IS NOT NULL AND settled_at_ms < :before_ms;

-- Ended workflows older than the retention with no webhook left (those go by their own
-- rule), deleted with their messages and the statuses waiting for them.
-- name: expire_workflows
WITH expired AS MATERIALIZED (
    SELECT w.dispatch_uuid FROM workflows w
    WHERE w.status <> 'in_progress' AND w.updated_at_ms < :before_ms
      AND NOT EXISTS (SELECT 1 FROM webhooks h WHERE h.dispatch_uuid = w.dispatch_uuid)
    ORDER BY w.updated_at_ms
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
), gone_messages AS (
    DELETE FROM messages m USING expired e WHERE m.dispatch_uuid = e.dispatch_uuid
    RETURNING m.message_uuid
), gone_inbox AS (
    DELETE FROM inbox i USING gone_messages g WHERE i.message_uuid = g.message_uuid
)
DELETE FROM workflows w USING expired e WHERE w.dispatch_uuid = e.dispatch_uuid;

-- JWTs seen ----------------------------------------------------------------------------------

-- A token's first use inserts its row (1 row changed); a replay changes nothing (0), unless
-- the row left behind belongs to a token that has expired since. Two processes given the same
-- token at once: the primary key lets one insert, the other waits for it and changes nothing.
--
-- Its commit does not wait for the WAL to reach the disk (`synchronous_commit` off for this
-- one transaction, set in the FROM clause so that it runs): a crash of PostgreSQL itself can
-- forget the last fraction of a second of tokens, which could then be replayed once until
-- they expire; waiting for the flush cost 2.4 ms a request and capped new tokens at about
-- 1,500/s on a 10-connection pool.
-- name: remember_token
INSERT INTO seen_tokens (application_id, jti, expires_at_ms)
SELECT :application_id, :jti, :expires_at_ms
FROM (SELECT set_config('synchronous_commit', 'off', true)) AS asynchronous_commit
ON CONFLICT (application_id, jti) DO UPDATE SET expires_at_ms = excluded.expires_at_ms
WHERE seen_tokens.expires_at_ms < :now_ms;

-- name: forget_expired_tokens
DELETE FROM seen_tokens WHERE (application_id, jti) IN (
    SELECT application_id, jti FROM seen_tokens
    WHERE expires_at_ms < :now_ms
    ORDER BY expires_at_ms
    LIMIT :limit
    FOR UPDATE SKIP LOCKED);

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
  AND (:application_id::text IS NULL OR w.application_id = :application_id)
  AND (:status::text IS NULL OR w.status = :status)
  AND (:channel::text IS NULL OR EXISTS (SELECT 1 FROM workflow_terms t
                                   WHERE t.term = :channel AND t.dispatch_uuid = w.dispatch_uuid))
  AND (:recipient::text IS NULL OR EXISTS (SELECT 1 FROM workflow_terms t
                                     WHERE t.term = :recipient
                                       AND t.dispatch_uuid = w.dispatch_uuid))
ORDER BY w.dispatch_uuid DESC
LIMIT :limit;

-- name: dashboard_workflows_walk
SELECT min(dispatch_uuid) AS floor, count(*) AS walked FROM (
    SELECT dispatch_uuid FROM workflows
    WHERE dispatch_uuid < :before AND dispatch_uuid >= :after
    ORDER BY dispatch_uuid DESC
    LIMIT :budget) AS walk;

-- name: dashboard_workflows_of_application
SELECT w.dispatch_uuid, w.application_id, w.template, w.status, w.request_json,
       w.created_at_ms, w.updated_at_ms
FROM workflows w
WHERE w.application_id = :application_id
  AND w.dispatch_uuid < :before AND w.dispatch_uuid >= :after
  AND (:status::text IS NULL OR w.status = :status)
  AND (:channel::text IS NULL OR EXISTS (SELECT 1 FROM workflow_terms t
                                   WHERE t.term = :channel AND t.dispatch_uuid = w.dispatch_uuid))
  AND (:recipient::text IS NULL OR EXISTS (SELECT 1 FROM workflow_terms t
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
    LIMIT :budget) AS walk;

-- A status other than `completed`, down workflows_not_completed (its condition is repeated
-- so that the planner may use that partial index).
-- name: dashboard_workflows_of_status
SELECT w.dispatch_uuid, w.application_id, w.template, w.status, w.request_json,
       w.created_at_ms, w.updated_at_ms
FROM workflows w
WHERE w.status = :status AND w.status <> 'completed'
  AND w.dispatch_uuid < :before AND w.dispatch_uuid >= :after
  AND (:application_id::text IS NULL OR w.application_id = :application_id)
  AND (:channel::text IS NULL OR EXISTS (SELECT 1 FROM workflow_terms t
                                   WHERE t.term = :channel AND t.dispatch_uuid = w.dispatch_uuid))
  AND (:recipient::text IS NULL OR EXISTS (SELECT 1 FROM workflow_terms t
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
    LIMIT :budget) AS walk;

-- One term's workflows (a recipient, a channel), down its range of workflow_terms.
-- name: dashboard_workflows_of_term
SELECT w.dispatch_uuid, w.application_id, w.template, w.status, w.request_json,
       w.created_at_ms, w.updated_at_ms
FROM workflow_terms d JOIN workflows w ON w.dispatch_uuid = d.dispatch_uuid
WHERE d.term = :term AND d.dispatch_uuid < :before AND d.dispatch_uuid >= :after
  AND (:application_id::text IS NULL OR d.application_id = :application_id)
  AND (:status::text IS NULL OR w.status = :status)
  AND (:channel::text IS NULL OR EXISTS (SELECT 1 FROM workflow_terms t
                                   WHERE t.term = :channel AND t.dispatch_uuid = d.dispatch_uuid))
  AND (:recipient::text IS NULL OR EXISTS (SELECT 1 FROM workflow_terms t
                                     WHERE t.term = :recipient
                                       AND t.dispatch_uuid = d.dispatch_uuid))
ORDER BY d.dispatch_uuid DESC
LIMIT :limit;

-- name: dashboard_workflows_of_term_walk
SELECT min(dispatch_uuid) AS floor, count(*) AS walked FROM (
    SELECT dispatch_uuid FROM workflow_terms
    WHERE term = :term AND dispatch_uuid < :before AND dispatch_uuid >= :after
    ORDER BY dispatch_uuid DESC
    LIMIT :budget) AS walk;

-- Dead webhooks across applications, newest first (webhooks_dead_everywhere).
-- name: dashboard_dead_webhooks
SELECT id, event_id, dispatch_uuid, application_id, kind, message_uuid, status, url, state,
       attempts, replays, NULL AS next_attempt_at_ms, last_status_code, last_error,
       created_at_ms, delivered_at_ms
FROM webhooks
WHERE state = 'dead' AND id < :before_id
  AND (:application_id::text IS NULL OR application_id = :application_id)
ORDER BY id DESC LIMIT :limit;

-- Webhooks still being retried after a failed attempt (webhooks_failing).
-- name: dashboard_failing_webhooks
SELECT id, event_id, dispatch_uuid, application_id, kind, message_uuid, status, url, state,
       attempts, replays, next_attempt_at_ms, last_status_code, last_error, created_at_ms,
       delivered_at_ms
FROM webhooks
WHERE state = 'pending' AND last_error IS NOT NULL AND id < :before_id
  AND (:application_id::text IS NULL OR application_id = :application_id)
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
FROM unnest(:bounds::text[]) WITH ORDINALITY AS lo (value, key)
JOIN unnest(:bounds::text[]) WITH ORDINALITY AS hi (value, key) ON hi.key = lo.key + 1
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

-- What is waiting, each count from a partial index.
-- name: dashboard_queues
SELECT (SELECT count(*) FROM messages WHERE send_state = 'pending') AS sends_pending,
       (SELECT count(*) FROM messages WHERE send_state = 'sending') AS sends_in_flight,
       (SELECT count(*) FROM workflows WHERE due_at_ms IS NOT NULL) AS timers,
       (SELECT count(*) FROM webhooks
        WHERE state = 'pending' AND lease_until_ms IS NULL) AS webhooks_waiting,
       (SELECT count(*) FROM webhooks WHERE lease_until_ms IS NOT NULL) AS webhooks_in_flight,
       (SELECT count(*) FROM webhooks WHERE state = 'held') AS webhooks_held,
       (SELECT count(*) FROM webhooks
        WHERE state = 'pending' AND last_error IS NOT NULL) AS webhooks_failing,
       (SELECT count(*) FROM webhooks WHERE state = 'dead') AS webhooks_dead,
       (SELECT count(*) FROM inbox) AS statuses_waiting;

-- Idempotency keys -------------------------------------------------------------------------------

-- A batch of requests' keys, each row's first request inserting it with the workflow it
-- creates, in the transaction that writes those workflows; a later request finds the row and
-- gets it back unchanged, unless the row is older than :window_ms (24 hours) before the new
-- request: then the key counts as forgotten and the new request takes it over. Each row comes
-- back as it is now: the caller's own dispatch_uuid means its request claimed the key.
-- A key another transaction has just inserted makes this one wait until that commits (then
-- it finds its row) or rolls back (then it inserts); keys go in sorted order, so two batches
-- of several keys cannot deadlock. A key appears at most once per batch (the caller sees to
-- it: DO UPDATE cannot touch one row twice in a statement).
-- name: claim_idempotency_keys
INSERT INTO idempotency_keys AS k
    (application_id, idempotency_key, request_hash, dispatch_uuid, created_at_ms)
SELECT n.application_id, n.idempotency_key, n.request_hash, n.dispatch_uuid, n.created_at_ms
FROM unnest(:application_id::text[], :idempotency_key::text[], :request_hash::text[],
            :dispatch_uuid::text[], :created_at_ms::bigint[])
     AS n (application_id, idempotency_key, request_hash, dispatch_uuid, created_at_ms)
ORDER BY n.application_id, n.idempotency_key
ON CONFLICT (application_id, idempotency_key) DO UPDATE
SET request_hash = CASE WHEN k.created_at_ms < excluded.created_at_ms - :window_ms::bigint
                        THEN excluded.request_hash ELSE k.request_hash END,
    dispatch_uuid = CASE WHEN k.created_at_ms < excluded.created_at_ms - :window_ms::bigint
                         THEN excluded.dispatch_uuid ELSE k.dispatch_uuid END,
    created_at_ms = CASE WHEN k.created_at_ms < excluded.created_at_ms - :window_ms::bigint
                         THEN excluded.created_at_ms ELSE k.created_at_ms END
RETURNING k.application_id, k.idempotency_key, k.request_hash, k.dispatch_uuid;

-- Keys older than the window, oldest first.
-- name: forget_idempotency_keys
DELETE FROM idempotency_keys WHERE (application_id, idempotency_key) IN (
    SELECT application_id, idempotency_key FROM idempotency_keys
    WHERE created_at_ms < :before_ms
    ORDER BY created_at_ms
    LIMIT :limit
    FOR UPDATE SKIP LOCKED);
