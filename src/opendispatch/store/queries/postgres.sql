-- Named queries for the PostgreSQL store (see store/queries.py). Parameters are positional
-- ($1, $2, ...). Names match sqlite.sql where the query means the same; a plural name
-- (read_workflows, write_transitions, create_workflows, ...) takes one array per column and
-- writes a whole batch's rows in one statement with unnest(...): the store sends concurrent
-- calls of one kind together (see postgres/coalesce.py).
--
-- Several processes share these tables, so unlike on SQLite:
-- - a transition is written only if its workflow is still at the version it was read at;
--   after a few lost races an event locks its workflow row instead (lock_workflow*);
-- - claims lock the rows they take with FOR UPDATE SKIP LOCKED, so concurrent claimers pass
--   each other by instead of waiting, and stamp a lease; a lease that ran out is claimable
--   again (the process that held it is presumed dead);
-- - times are always the caller's (`now_ms` parameters), never the database's clock, so a
--   test's driven clock means the same thing here as on SQLite.

-- Migrations -----------------------------------------------------------------------------------

-- Held until COMMIT: processes starting together migrate one after the other, and each
-- finds the work done by the one before it.
-- name: migration_lock
SELECT pg_advisory_xact_lock($1);

-- name: create_schema_migrations
CREATE TABLE IF NOT EXISTS schema_migrations (
    version       integer PRIMARY KEY,
    name          text NOT NULL,
    applied_at_ms bigint NOT NULL
);

-- name: applied_migrations
SELECT version FROM schema_migrations ORDER BY version;

-- name: record_migration
INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES ($1, $2, $3);

-- Applications ---------------------------------------------------------------------------------

-- name: insert_account
INSERT INTO accounts (api_key, api_secret_hash, signature_secret, created_at_ms)
VALUES ($1, $2, $3, $4);

-- name: insert_application
INSERT INTO applications
    (application_id, api_key, name, status_url, final_report_url, public_key_pem, created_at_ms)
VALUES ($1, $2, $3, $4, $5, $6, $7);

-- name: list_applications
SELECT application_id, name, api_key, status_url, final_report_url, created_at_ms
FROM applications
ORDER BY created_at_ms, application_id;

-- name: credentials_by_api_key
SELECT a.application_id, a.name, a.api_key, a.status_url, a.final_report_url, a.created_at_ms,
       c.api_secret_hash, c.signature_secret, a.public_key_pem
FROM applications a JOIN accounts c ON c.api_key = a.api_key
WHERE a.api_key = $1;

-- name: credentials_by_application_id
SELECT a.application_id, a.name, a.api_key, a.status_url, a.final_report_url, a.created_at_ms,
       c.api_secret_hash, c.signature_secret, a.public_key_pem
FROM applications a JOIN accounts c ON c.api_key = a.api_key
WHERE a.application_id = $1;

-- Workflows ------------------------------------------------------------------------------------

-- name: get_workflow
SELECT dispatch_uuid, application_id, template, status, request_json, created_at_ms, updated_at_ms
FROM workflows
WHERE dispatch_uuid = $1 AND application_id = $2;

-- name: list_workflows
SELECT dispatch_uuid, application_id, template, status, request_json, created_at_ms, updated_at_ms
FROM workflows
WHERE application_id = $1 AND dispatch_uuid < $2
ORDER BY dispatch_uuid DESC
LIMIT $3;

-- The engine's transitions ---------------------------------------------------------------------

-- name: load_workflow
SELECT w.dispatch_uuid, w.application_id, w.template, w.status, w.request_json,
       w.created_at_ms, w.updated_at_ms, w.state_json, a.api_key, a.status_url,
       a.final_report_url
FROM workflows w JOIN applications a ON a.application_id = w.application_id
WHERE w.dispatch_uuid = $1;

-- What a batch of events needs of their workflows, and the version each transition must find
-- unchanged; `key` says which event a row is for. By workflow, or by one of its messages: two
-- statements, because the planner takes several times longer over their union (measured:
-- 0.45 ms of planning per batch, more than the read itself).
-- name: read_workflows
SELECT false AS by_message, w.dispatch_uuid AS key, w.dispatch_uuid, w.application_id,
       w.template, w.status, w.request_json, w.created_at_ms, w.updated_at_ms, w.state_json,
       a.api_key, a.status_url, a.final_report_url, w.version
FROM workflows w JOIN applications a ON a.application_id = w.application_id
WHERE w.dispatch_uuid = ANY ($1::text[]);

-- name: read_workflows_of_messages
SELECT true AS by_message, m.message_uuid AS key, w.dispatch_uuid, w.application_id,
       w.template, w.status, w.request_json, w.created_at_ms, w.updated_at_ms, w.state_json,
       a.api_key, a.status_url, a.final_report_url, w.version
FROM messages m
JOIN workflows w ON w.dispatch_uuid = m.dispatch_uuid
JOIN applications a ON a.application_id = w.application_id
WHERE m.message_uuid = ANY ($1::text[]);

-- After a few lost races: the same read for one event, holding the row until its transition
-- is written in the same transaction.
-- name: lock_workflow
SELECT false AS by_message, w.dispatch_uuid AS key, w.dispatch_uuid, w.application_id,
       w.template, w.status, w.request_json, w.created_at_ms, w.updated_at_ms, w.state_json,
       a.api_key, a.status_url, a.final_report_url, w.version
FROM workflows w JOIN applications a ON a.application_id = w.application_id
WHERE w.dispatch_uuid = $1
FOR UPDATE OF w;

-- name: lock_workflow_of_message
SELECT true AS by_message, $1 AS key, w.dispatch_uuid, w.application_id, w.template,
       w.status, w.request_json, w.created_at_ms, w.updated_at_ms, w.state_json, a.api_key,
       a.status_url, a.final_report_url, w.version
FROM workflows w JOIN applications a ON a.application_id = w.application_id
WHERE w.dispatch_uuid = (SELECT m.dispatch_uuid FROM messages m WHERE m.message_uuid = $1)
FOR UPDATE OF w;

-- A batch of events' transitions, each with its effects, in one statement. A workflow's
-- transition is written only if its row is still at the version it was read at and no other
-- statement holds it right now (SKIP LOCKED: no waiting, so batches of two processes cannot
-- deadlock); every effect row carries its workflow's id and is written only if that workflow
-- was (`changed`). Returns the workflows written: an event whose workflow is missing lost a
-- race, and is read and decided again. Bookkeeping rows (a send completed, an inbox row
-- consumed or scheduled) whose `gate` is NULL belong to events that changed no workflow and
-- are written unconditionally. Each unnest(...) is one array per column.
-- name: write_transitions
WITH input AS (
    SELECT *
    FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::bigint[])
         AS i (dispatch_uuid, version, state_json, status, due_at_ms, updated_at_ms)
), locked AS MATERIALIZED (
    SELECT w.dispatch_uuid
    FROM workflows w JOIN input i ON i.dispatch_uuid = w.dispatch_uuid
    WHERE w.version = i.version
    ORDER BY w.dispatch_uuid
    FOR UPDATE OF w SKIP LOCKED
), changed AS (
    UPDATE workflows w
    SET state_json = i.state_json, status = i.status, due_at_ms = i.due_at_ms,
        updated_at_ms = i.updated_at_ms, version = w.version + 1
    FROM input i
    WHERE w.dispatch_uuid = i.dispatch_uuid AND w.version = i.version
      AND w.dispatch_uuid IN (SELECT dispatch_uuid FROM locked)
    RETURNING w.dispatch_uuid, w.application_id, i.updated_at_ms
), sends AS (
    INSERT INTO messages
        (message_uuid, dispatch_uuid, step, channel, provider, payload_json, send_state,
         next_attempt_at_ms, created_at_ms)
    SELECT s.message_uuid, s.dispatch_uuid, s.step, s.channel, s.provider, s.payload_json,
           'pending', s.next_attempt_at_ms, c.updated_at_ms
    FROM unnest($7::text[], $8::text[], $9::integer[], $10::text[], $11::text[], $12::text[],
                $13::bigint[])
         AS s (dispatch_uuid, message_uuid, step, channel, provider, payload_json,
               next_attempt_at_ms)
    JOIN changed c ON c.dispatch_uuid = s.dispatch_uuid
), cancels AS (
    UPDATE messages m
    SET send_state = 'cancelled', lease_until_ms = NULL, lease_owner = NULL
    FROM unnest($14::text[], $15::text[]) AS x (dispatch_uuid, message_uuid)
    WHERE m.message_uuid = x.message_uuid AND m.send_state = 'pending'
      AND x.dispatch_uuid IN (SELECT dispatch_uuid FROM changed)
), new_webhooks AS (
    SELECT n.*, c.application_id, c.updated_at_ms
    FROM unnest($16::text[], $17::text[], $18::text[], $19::text[], $20::text[], $21::text[],
                $22::text[], $23::bigint[]) WITH ORDINALITY
         AS n (dispatch_uuid, event_id, kind, message_uuid, status, url, payload,
               next_attempt_at_ms, position)
    JOIN changed c ON c.dispatch_uuid = n.dispatch_uuid
), waited_for AS MATERIALIZED (
    -- The pending webhooks a new final report waits for, share-locked in id order (as every
    -- writer of pending webhooks locks them): see migration 0005 for the race this closes.
    SELECT w.dispatch_uuid FROM webhooks w
    WHERE w.dispatch_uuid IN (SELECT dispatch_uuid FROM new_webhooks
                              WHERE kind = 'final_report')
      AND w.state = 'pending'
    ORDER BY w.id
    FOR SHARE OF w
), webhooks_written AS (
    -- A final report is held while its workflow still has webhooks to deliver, its own
    -- transition's status webhooks (earlier in the arrays) included.
    INSERT INTO webhooks
        (event_id, dispatch_uuid, application_id, kind, message_uuid, status, url, payload,
         state, next_attempt_at_ms, created_at_ms)
    SELECT n.event_id, n.dispatch_uuid, n.application_id, n.kind, n.message_uuid, n.status,
           n.url, n.payload,
           CASE WHEN n.kind = 'final_report' AND (
                    EXISTS (SELECT 1 FROM waited_for w WHERE w.dispatch_uuid = n.dispatch_uuid)
                    OR EXISTS (SELECT 1 FROM new_webhooks e
                               WHERE e.dispatch_uuid = n.dispatch_uuid
                                 AND e.position < n.position AND e.kind <> 'final_report'))
                THEN 'held' ELSE 'pending' END,
           n.next_attempt_at_ms, n.updated_at_ms
    FROM new_webhooks n
    ORDER BY n.position
), completed AS (
    UPDATE messages m
    SET send_state = d.send_state, provider_message_id = d.provider_message_id,
        last_error = d.error, lease_until_ms = NULL, lease_owner = NULL
    FROM unnest($24::text[], $25::text[], $26::text[], $27::text[], $28::text[])
         AS d (gate, message_uuid, send_state, provider_message_id, error)
    WHERE m.message_uuid = d.message_uuid
      AND (d.gate IS NULL OR d.gate IN (SELECT dispatch_uuid FROM changed))
), inbox_consumed AS (
    DELETE FROM inbox q
    USING unnest($29::text[], $30::bigint[]) AS d (gate, id)
    WHERE q.id = d.id AND (d.gate IS NULL OR d.gate IN (SELECT dispatch_uuid FROM changed))
), inbox_scheduled AS (
    INSERT INTO inbox (message_uuid, status, error_code, error_reason, price, due_at_ms)
    SELECT d.message_uuid, d.status, d.error_code, d.error_reason, d.price, d.due_at_ms
    FROM unnest($31::text[], $32::text[], $33::text[], $34::integer[], $35::text[],
                $36::text[], $37::bigint[])
         AS d (gate, message_uuid, status, error_code, error_reason, price, due_at_ms)
    WHERE d.gate IS NULL OR d.gate IN (SELECT dispatch_uuid FROM changed)
)
SELECT dispatch_uuid FROM changed;

-- New workflows with their first transitions, in one statement (one array per column; the
-- sends and webhooks name their workflow).
-- name: create_workflows
WITH workflow AS (
    INSERT INTO workflows
        (dispatch_uuid, application_id, template, status, request_json, created_at_ms,
         updated_at_ms, state_json, due_at_ms)
    SELECT *
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[],
                $7::bigint[], $8::text[], $9::bigint[])
), sends AS (
    INSERT INTO messages
        (message_uuid, dispatch_uuid, step, channel, provider, payload_json, send_state,
         next_attempt_at_ms, created_at_ms)
    SELECT s.message_uuid, s.dispatch_uuid, s.step, s.channel, s.provider, s.payload_json,
           'pending', s.next_attempt_at_ms, s.created_at_ms
    FROM unnest($10::text[], $11::text[], $12::integer[], $13::text[], $14::text[],
                $15::text[], $16::bigint[], $17::bigint[])
         AS s (dispatch_uuid, message_uuid, step, channel, provider, payload_json,
               next_attempt_at_ms, created_at_ms)
), new_webhooks AS (
    SELECT *
    FROM unnest($18::text[], $19::text[], $20::text[], $21::text[], $22::text[], $23::text[],
                $24::text[], $25::text[], $26::bigint[], $27::bigint[]) WITH ORDINALITY
         AS n (dispatch_uuid, application_id, event_id, kind, message_uuid, status, url,
               payload, next_attempt_at_ms, created_at_ms, position)
)
INSERT INTO webhooks
    (event_id, dispatch_uuid, application_id, kind, message_uuid, status, url, payload, state,
     next_attempt_at_ms, created_at_ms)
SELECT n.event_id, n.dispatch_uuid, n.application_id, n.kind, n.message_uuid, n.status, n.url,
       n.payload,
       CASE WHEN n.kind = 'final_report' AND EXISTS (
                SELECT 1 FROM new_webhooks e
                WHERE e.dispatch_uuid = n.dispatch_uuid AND e.position < n.position
                  AND e.kind <> 'final_report')
            THEN 'held' ELSE 'pending' END,
       n.next_attempt_at_ms, n.created_at_ms
FROM new_webhooks n
ORDER BY n.position;

-- Sends ----------------------------------------------------------------------------------------

-- Two index walks, each locking what it takes: due pending sends (messages_due), and sends
-- whose claimer's lease ran out (messages_leased). MATERIALIZED keeps each walk (and its row
-- locks) to exactly one run.
-- name: claim_sends
WITH due AS MATERIALIZED (
    SELECT message_uuid, next_attempt_at_ms AS due_at_ms FROM messages
    WHERE send_state = 'pending' AND next_attempt_at_ms <= $3
    ORDER BY next_attempt_at_ms
    LIMIT $4
    FOR UPDATE SKIP LOCKED
), expired AS MATERIALIZED (
    SELECT message_uuid, lease_until_ms AS due_at_ms FROM messages
    WHERE send_state = 'sending' AND lease_until_ms <= $3
    ORDER BY lease_until_ms
    LIMIT $4
    FOR UPDATE SKIP LOCKED
)
UPDATE messages m
SET send_state = 'sending', lease_until_ms = $1, lease_owner = $2, attempts = m.attempts + 1
WHERE m.message_uuid IN (
    SELECT c.message_uuid FROM (SELECT * FROM due UNION ALL SELECT * FROM expired) AS c
    ORDER BY c.due_at_ms
    LIMIT $4)
RETURNING m.message_uuid, m.dispatch_uuid, m.step, m.channel, m.provider, m.payload_json,
          m.attempts, m.created_at_ms;

-- Only the lease's holder may put its send back: if its lease ran out and another process
-- claimed the send meanwhile, that one's claim stands (on SQLite the same guard is the
-- 'sending' state, which the lease's expiry resets).
-- name: retry_send
UPDATE messages
SET send_state = 'pending', next_attempt_at_ms = $1, lease_until_ms = NULL, lease_owner = NULL,
    last_error = $2
WHERE message_uuid = $3 AND send_state = 'sending' AND lease_owner = $4;

-- name: next_send_due
SELECT least(
    (SELECT min(next_attempt_at_ms) FROM messages WHERE send_state = 'pending'),
    (SELECT min(lease_until_ms) FROM messages WHERE send_state = 'sending'));

-- Timers ---------------------------------------------------------------------------------------

-- Not a claim: every process may see the same due workflow; the row lock in `apply` makes
-- the second firing find the state the first one left (no longer due).
-- name: due_timers
SELECT dispatch_uuid FROM workflows
WHERE due_at_ms IS NOT NULL AND due_at_ms <= $1
ORDER BY due_at_ms
LIMIT $2;

-- name: next_timer_due
SELECT min(due_at_ms) FROM workflows WHERE due_at_ms IS NOT NULL;

-- Inbox ----------------------------------------------------------------------------------------

-- name: claim_inbox
WITH due AS MATERIALIZED (
    SELECT id, due_at_ms FROM inbox
    WHERE lease_until_ms IS NULL AND due_at_ms <= $3
    ORDER BY due_at_ms
    LIMIT $4
    FOR UPDATE SKIP LOCKED
), expired AS MATERIALIZED (
    SELECT id, due_at_ms FROM inbox
    WHERE lease_until_ms <= $3
    ORDER BY lease_until_ms
    LIMIT $4
    FOR UPDATE SKIP LOCKED
)
UPDATE inbox i SET lease_until_ms = $1, lease_owner = $2
WHERE i.id IN (
    SELECT c.id FROM (SELECT * FROM due UNION ALL SELECT * FROM expired) AS c
    ORDER BY c.due_at_ms
    LIMIT $4)
RETURNING i.id, i.message_uuid, i.status, i.error_code, i.error_reason, i.price, i.due_at_ms;

-- name: next_inbox_due
SELECT least(
    (SELECT min(due_at_ms) FROM inbox WHERE lease_until_ms IS NULL),
    (SELECT min(lease_until_ms) FROM inbox WHERE lease_until_ms IS NOT NULL));

-- Webhooks -------------------------------------------------------------------------------------

-- Each application's due webhooks come from its own range of webhooks_due (an application at
-- its delivery limit, in $4, costs nothing), with the webhooks whose lease ran out; oldest
-- first across applications.
-- name: claim_webhooks
WITH due AS MATERIALIZED (
    SELECT w.id, w.next_attempt_at_ms AS due_at_ms
    FROM applications a
    CROSS JOIN LATERAL (
        SELECT id, next_attempt_at_ms FROM webhooks
        WHERE application_id = a.application_id AND state = 'pending'
          AND lease_until_ms IS NULL AND next_attempt_at_ms <= $3
        ORDER BY next_attempt_at_ms
        LIMIT $5
        FOR UPDATE SKIP LOCKED
    ) AS w
    WHERE a.application_id <> ALL ($4::text[])
), expired AS MATERIALIZED (
    SELECT id, lease_until_ms AS due_at_ms FROM webhooks
    WHERE lease_until_ms <= $3 AND state = 'pending' AND application_id <> ALL ($4::text[])
    ORDER BY lease_until_ms
    LIMIT $5
    FOR UPDATE SKIP LOCKED
)
UPDATE webhooks w SET lease_until_ms = $1, lease_owner = $2, attempts = w.attempts + 1
WHERE w.id IN (
    SELECT c.id FROM (SELECT * FROM due UNION ALL SELECT * FROM expired) AS c
    ORDER BY c.due_at_ms
    LIMIT $5)
RETURNING w.id, w.event_id, w.dispatch_uuid, w.application_id, w.url, w.payload, w.attempts,
          w.created_at_ms, w.replays, coalesce(w.replayed_at_ms, w.created_at_ms) AS retry_from_ms;

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
    (SELECT min(lease_until_ms) FROM webhooks WHERE lease_until_ms IS NOT NULL));

-- Outcomes of delivery attempts, and the release of the final reports they were the last to
-- wait for (see the function in migration 0005 for why it is a function).
-- name: record_webhook_attempts
SELECT record_webhook_attempts($1::bigint[], $2::text[], $3::bigint[], $4::integer[],
                               $5::text[], $6::bigint[], $7::bigint[]);

-- Held final reports whose workflow has nothing left to deliver. The release after each
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

-- name: list_webhooks
SELECT id, event_id, dispatch_uuid, application_id, kind, message_uuid, status, url, state,
       attempts, replays, CASE WHEN state = 'pending' THEN next_attempt_at_ms END
       AS next_attempt_at_ms, last_status_code, last_error, created_at_ms, delivered_at_ms
FROM webhooks WHERE dispatch_uuid = $1 ORDER BY id;

-- A claimed webhook handed back unattempted (its endpoint is backing off): the claim's
-- attempt is not counted.
-- Rows are locked in id order first, as every writer of pending webhooks does (see 0005).
-- name: defer_webhooks
WITH ordered AS MATERIALIZED (
    SELECT id FROM webhooks WHERE id = ANY ($1::bigint[]) ORDER BY id FOR UPDATE
)
UPDATE webhooks w
SET next_attempt_at_ms = d.until_ms, lease_until_ms = NULL, lease_owner = NULL,
    attempts = greatest(w.attempts - 1, 0)
FROM unnest($1::bigint[], $2::bigint[]) AS d (id, until_ms)
WHERE w.id = d.id AND w.state = 'pending' AND w.lease_owner = $3
  AND w.id IN (SELECT id FROM ordered);

-- An endpoint came back: its webhooks waiting for their next try are due now.
-- name: wake_webhooks
WITH ordered AS MATERIALIZED (
    SELECT id FROM webhooks
    WHERE application_id = $1 AND url = $2 AND state = 'pending' AND lease_until_ms IS NULL
      AND next_attempt_at_ms > $3
    ORDER BY id
    FOR UPDATE
)
UPDATE webhooks SET next_attempt_at_ms = $3 WHERE id IN (SELECT id FROM ordered);

-- Webhook lists, newest first, from a `before_id` down (each shaped like list_webhooks).
-- $1 dispatch_uuid, $2 application_id and $3 state (NULL: any), $4 before_id, $5 limit.
-- name: list_webhooks_of_workflow
SELECT id, event_id, dispatch_uuid, application_id, kind, message_uuid, status, url, state,
       attempts, replays, CASE WHEN state = 'pending' THEN next_attempt_at_ms END
       AS next_attempt_at_ms, last_status_code, last_error, created_at_ms, delivered_at_ms
FROM webhooks
WHERE dispatch_uuid = $1 AND id < $4
  AND ($2::text IS NULL OR application_id = $2) AND ($3::text IS NULL OR state = $3)
ORDER BY id DESC LIMIT $5;

-- $1 application_id, $2 state (NULL: any), $3 before_id, $4 limit.
-- name: list_webhooks_of_application
SELECT id, event_id, dispatch_uuid, application_id, kind, message_uuid, status, url, state,
       attempts, replays, CASE WHEN state = 'pending' THEN next_attempt_at_ms END
       AS next_attempt_at_ms, last_status_code, last_error, created_at_ms, delivered_at_ms
FROM webhooks
WHERE application_id = $1 AND id < $3 AND ($2::text IS NULL OR state = $2)
ORDER BY id DESC LIMIT $4;

-- Dead letters are few among many delivered: their own partial index finds them.
-- $1 application_id, $2 before_id, $3 limit.
-- name: list_dead_webhooks_of_application
SELECT id, event_id, dispatch_uuid, application_id, kind, message_uuid, status, url, state,
       attempts, replays, CASE WHEN state = 'pending' THEN next_attempt_at_ms END
       AS next_attempt_at_ms, last_status_code, last_error, created_at_ms, delivered_at_ms
FROM webhooks
WHERE application_id = $1 AND state = 'dead' AND id < $2
ORDER BY id DESC LIMIT $3;

-- $1 state (NULL: any), $2 before_id, $3 limit.
-- name: list_webhooks_everywhere
SELECT id, event_id, dispatch_uuid, application_id, kind, message_uuid, status, url, state,
       attempts, replays, CASE WHEN state = 'pending' THEN next_attempt_at_ms END
       AS next_attempt_at_ms, last_status_code, last_error, created_at_ms, delivered_at_ms
FROM webhooks
WHERE id < $2 AND ($1::text IS NULL OR state = $1)
ORDER BY id DESC LIMIT $3;

-- name: find_webhook
SELECT id, event_id, dispatch_uuid, application_id, kind, message_uuid, status, url, state,
       attempts, replays, CASE WHEN state = 'pending' THEN next_attempt_at_ms END
       AS next_attempt_at_ms, last_status_code, last_error, created_at_ms, delivered_at_ms
FROM webhooks WHERE event_id = $1;

-- Replay: the same body and webhook-id again, as a new delivery with a new retry period.
-- name: replay_webhook
UPDATE webhooks
SET state = 'pending', next_attempt_at_ms = $1, attempts = 0, replays = replays + 1,
    replayed_at_ms = $1, settled_at_ms = NULL, delivered_at_ms = NULL,
    lease_until_ms = NULL, lease_owner = NULL
WHERE id = $2 AND state IN ('delivered', 'dead');

-- $1 now, $2 application_id, $3 dispatch_uuid (NULL: any), $4 limit.
-- name: replay_dead_webhooks
UPDATE webhooks
SET state = 'pending', next_attempt_at_ms = $1, attempts = 0, replays = replays + 1,
    replayed_at_ms = $1, settled_at_ms = NULL, delivered_at_ms = NULL,
    lease_until_ms = NULL, lease_owner = NULL
WHERE id IN (
    SELECT id FROM webhooks
    WHERE state = 'dead'
      AND ($2::text IS NULL OR application_id = $2)
      AND ($3::text IS NULL OR dispatch_uuid = $3)
    LIMIT $4
    FOR UPDATE SKIP LOCKED);

-- name: replay_delivered_webhooks
UPDATE webhooks
SET state = 'pending', next_attempt_at_ms = $1, attempts = 0, replays = replays + 1,
    replayed_at_ms = $1, settled_at_ms = NULL, delivered_at_ms = NULL,
    lease_until_ms = NULL, lease_owner = NULL
WHERE id IN (
    SELECT id FROM webhooks
    WHERE state = 'delivered'
      AND ($2::text IS NULL OR application_id = $2)
      AND ($3::text IS NULL OR dispatch_uuid = $3)
    LIMIT $4
    FOR UPDATE SKIP LOCKED);

-- Retention ---------------------------------------------------------------------------------------

-- Settled webhooks (delivered or dead) older than the retention, oldest first.
-- name: expire_webhooks
DELETE FROM webhooks WHERE id IN (
    SELECT id FROM webhooks
    WHERE settled_at_ms IS NOT NULL AND settled_at_ms < $1
    ORDER BY settled_at_ms
    LIMIT $2
    FOR UPDATE SKIP LOCKED);

-- Ended workflows older than the retention with no webhook left (those go by their own
-- rule), deleted with their messages, statuses waiting in the inbox, and sandbox log.
-- name: expire_workflows
WITH expired AS MATERIALIZED (
    SELECT w.dispatch_uuid FROM workflows w
    WHERE w.status <> 'in_progress' AND w.updated_at_ms < $1
      AND NOT EXISTS (SELECT 1 FROM webhooks h WHERE h.dispatch_uuid = w.dispatch_uuid)
    ORDER BY w.updated_at_ms
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), gone_messages AS (
    DELETE FROM messages m USING expired e WHERE m.dispatch_uuid = e.dispatch_uuid
    RETURNING m.message_uuid
), gone_inbox AS (
    DELETE FROM inbox i USING gone_messages g WHERE i.message_uuid = g.message_uuid
), gone_sandbox AS (
    DELETE FROM sandbox_sends s USING gone_messages g WHERE s.message_uuid = g.message_uuid
)
DELETE FROM workflows w USING expired e WHERE w.dispatch_uuid = e.dispatch_uuid;

-- Lookups ----------------------------------------------------------------------------------------

-- name: message_owner
SELECT m.message_uuid, m.dispatch_uuid, w.application_id
FROM messages m JOIN workflows w ON w.dispatch_uuid = m.dispatch_uuid
WHERE m.message_uuid = $1;

-- name: unstarted_workflows
SELECT dispatch_uuid FROM workflows WHERE state_json IS NULL LIMIT $1;

-- Sandbox provider -------------------------------------------------------------------------------

-- A batch of sends the sandbox was asked to make (no message twice in one batch); returns
-- each one's attempt count.
-- name: sandbox_record_sends
INSERT INTO sandbox_sends (message_uuid, channel, recipient, outcome, attempts, first_sent_at_ms)
SELECT s.message_uuid, s.channel, s.recipient, s.outcome, 1, s.sent_at_ms
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[])
     AS s (message_uuid, channel, recipient, outcome, sent_at_ms)
ON CONFLICT (message_uuid) DO UPDATE SET attempts = sandbox_sends.attempts + 1
RETURNING message_uuid, attempts;

-- Wake-ups across processes ----------------------------------------------------------------------

-- name: notify
SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload;
