-- Named queries for the PostgreSQL store (see store/queries.py). Parameters are positional
-- ($1, $2, ...). Names match sqlite.sql where the query means the same; a plural name
-- (insert_sends, cancel_sends, insert_webhooks, ...) takes one array per column and writes
-- all of a transition's rows in one statement with unnest(...).
--
-- Several processes share these tables, so unlike on SQLite:
-- - an event locks its workflow row (lock_workflow*) for the length of its transaction;
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

-- name: insert_workflow
INSERT INTO workflows
    (dispatch_uuid, application_id, template, status, request_json, created_at_ms, updated_at_ms,
     state_json, due_at_ms)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9);

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

-- What an event needs of its workflow, and the version its transition must find unchanged.
-- name: read_workflow
SELECT w.dispatch_uuid, w.application_id, w.template, w.status, w.request_json,
       w.created_at_ms, w.updated_at_ms, w.state_json, a.api_key, a.status_url,
       a.final_report_url, w.version
FROM workflows w JOIN applications a ON a.application_id = w.application_id
WHERE w.dispatch_uuid = $1;

-- name: read_workflow_of_message
SELECT w.dispatch_uuid, w.application_id, w.template, w.status, w.request_json,
       w.created_at_ms, w.updated_at_ms, w.state_json, a.api_key, a.status_url,
       a.final_report_url, w.version
FROM messages m
JOIN workflows w ON w.dispatch_uuid = m.dispatch_uuid
JOIN applications a ON a.application_id = w.application_id
WHERE m.message_uuid = $1;

-- After a few lost races: the same read, holding the row until the transition is written.
-- name: lock_workflow
SELECT w.dispatch_uuid, w.application_id, w.template, w.status, w.request_json,
       w.created_at_ms, w.updated_at_ms, w.state_json, a.api_key, a.status_url,
       a.final_report_url, w.version
FROM workflows w JOIN applications a ON a.application_id = w.application_id
WHERE w.dispatch_uuid = $1
FOR UPDATE OF w;

-- name: lock_workflow_of_message
SELECT w.dispatch_uuid, w.application_id, w.template, w.status, w.request_json,
       w.created_at_ms, w.updated_at_ms, w.state_json, a.api_key, a.status_url,
       a.final_report_url, w.version
FROM workflows w JOIN applications a ON a.application_id = w.application_id
WHERE w.dispatch_uuid = (SELECT m.dispatch_uuid FROM messages m WHERE m.message_uuid = $1)
FOR UPDATE OF w;

-- One event's whole transition in one statement, applied only if the workflow is still at the
-- version it was read at ($2): every other part is gated on `changed`, so a process that lost
-- the race to another writes nothing, reads the new state and decides again. One round trip,
-- no explicit transaction, no lock held while Python decides.
-- name: write_transition
WITH changed AS (
    UPDATE workflows
    SET state_json = $3, status = $4, due_at_ms = $5, updated_at_ms = $6, version = version + 1
    WHERE dispatch_uuid = $1 AND version = $2
    RETURNING dispatch_uuid
), sends AS (
    INSERT INTO messages
        (message_uuid, dispatch_uuid, step, channel, provider, payload_json, send_state,
         next_attempt_at_ms, created_at_ms)
    SELECT s.message_uuid, $1, s.step, s.channel, s.provider, s.payload_json, 'pending',
           s.next_attempt_at_ms, $6
    FROM unnest($7::text[], $8::integer[], $9::text[], $10::text[], $11::text[], $12::bigint[])
         AS s (message_uuid, step, channel, provider, payload_json, next_attempt_at_ms)
    WHERE EXISTS (SELECT 1 FROM changed)
), cancels AS (
    UPDATE messages SET send_state = 'cancelled', lease_until_ms = NULL, lease_owner = NULL
    WHERE message_uuid = ANY ($13::text[]) AND send_state = 'pending'
      AND EXISTS (SELECT 1 FROM changed)
), new_webhooks AS (
    SELECT *
    FROM unnest($14::text[], $15::text[], $16::text[], $17::text[], $18::text[], $19::text[],
                $20::bigint[]) WITH ORDINALITY
         AS n (event_id, kind, message_uuid, status, url, payload, next_attempt_at_ms, position)
    WHERE EXISTS (SELECT 1 FROM changed)
), webhooks_written AS (
    -- A final report is held while its workflow still has webhooks to deliver, its own
    -- transition's status webhooks (earlier in the arrays) included.
    INSERT INTO webhooks
        (event_id, dispatch_uuid, application_id, kind, message_uuid, status, url, payload,
         state, next_attempt_at_ms, created_at_ms)
    SELECT n.event_id, $1, $21, n.kind, n.message_uuid, n.status, n.url, n.payload,
           CASE WHEN n.kind = 'final_report' AND (
                    EXISTS (SELECT 1 FROM webhooks w
                            WHERE w.dispatch_uuid = $1 AND w.state = 'pending')
                    OR EXISTS (SELECT 1 FROM new_webhooks e
                               WHERE e.position < n.position AND e.kind <> 'final_report'))
                THEN 'held' ELSE 'pending' END,
           n.next_attempt_at_ms, $6
    FROM new_webhooks n
), completed AS (
    UPDATE messages
    SET send_state = $23, provider_message_id = $24, last_error = $25, lease_until_ms = NULL,
        lease_owner = NULL
    WHERE message_uuid = $22 AND EXISTS (SELECT 1 FROM changed)
), inbox_consumed AS (
    DELETE FROM inbox WHERE id = $26 AND EXISTS (SELECT 1 FROM changed)
), inbox_scheduled AS (
    INSERT INTO inbox (message_uuid, status, error_code, error_reason, price, due_at_ms)
    SELECT * FROM unnest($27::text[], $28::text[], $29::integer[], $30::text[], $31::text[],
                         $32::bigint[])
    WHERE EXISTS (SELECT 1 FROM changed)
)
SELECT count(*) FROM changed;

-- An event that changes nothing (or finds no workflow) is still consumed: its bookkeeping.
-- name: write_side
WITH completed AS (
    UPDATE messages
    SET send_state = $2, provider_message_id = $3, last_error = $4, lease_until_ms = NULL,
        lease_owner = NULL
    WHERE message_uuid = $1
), inbox_consumed AS (
    DELETE FROM inbox WHERE id = $5
)
INSERT INTO inbox (message_uuid, status, error_code, error_reason, price, due_at_ms)
SELECT * FROM unnest($6::text[], $7::text[], $8::integer[], $9::text[], $10::text[],
                     $11::bigint[]);

-- A new workflow with its first transition, in one statement.
-- name: create_workflow
WITH workflow AS (
    INSERT INTO workflows
        (dispatch_uuid, application_id, template, status, request_json, created_at_ms,
         updated_at_ms, state_json, due_at_ms)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
), sends AS (
    INSERT INTO messages
        (message_uuid, dispatch_uuid, step, channel, provider, payload_json, send_state,
         next_attempt_at_ms, created_at_ms)
    SELECT s.message_uuid, $1, s.step, s.channel, s.provider, s.payload_json, 'pending',
           s.next_attempt_at_ms, $7
    FROM unnest($10::text[], $11::integer[], $12::text[], $13::text[], $14::text[],
                $15::bigint[])
         AS s (message_uuid, step, channel, provider, payload_json, next_attempt_at_ms)
)
INSERT INTO webhooks
    (event_id, dispatch_uuid, application_id, kind, message_uuid, status, url, payload, state,
     next_attempt_at_ms, created_at_ms)
SELECT n.event_id, $1, $2, n.kind, n.message_uuid, n.status, n.url, n.payload,
       CASE WHEN n.kind = 'final_report' AND EXISTS (
                SELECT 1 FROM unnest($17::text[]) WITH ORDINALITY AS e (kind, position)
                WHERE e.position < n.position AND e.kind <> 'final_report')
            THEN 'held' ELSE 'pending' END,
       n.next_attempt_at_ms, $7
FROM unnest($16::text[], $17::text[], $18::text[], $19::text[], $20::text[], $21::text[],
            $22::bigint[]) WITH ORDINALITY
     AS n (event_id, kind, message_uuid, status, url, payload, next_attempt_at_ms, position);

-- name: update_workflow_state
UPDATE workflows SET state_json = $1, status = $2, due_at_ms = $3, updated_at_ms = $4
WHERE dispatch_uuid = $5;

-- name: insert_sends
INSERT INTO messages
    (message_uuid, dispatch_uuid, step, channel, provider, payload_json, send_state,
     next_attempt_at_ms, created_at_ms)
SELECT s.message_uuid, s.dispatch_uuid, s.step, s.channel, s.provider, s.payload_json,
       'pending', s.next_attempt_at_ms, $8::bigint
FROM unnest($1::text[], $2::text[], $3::integer[], $4::text[], $5::text[], $6::text[],
            $7::bigint[])
     AS s (message_uuid, dispatch_uuid, step, channel, provider, payload_json,
           next_attempt_at_ms);

-- name: cancel_sends
UPDATE messages SET send_state = 'cancelled', lease_until_ms = NULL, lease_owner = NULL
WHERE message_uuid = ANY ($1::text[]) AND send_state = 'pending';

-- A final report is held while its workflow still has webhooks to deliver. As on SQLite the
-- same transition's status webhooks, written before it, count; one statement does not see
-- its own rows, so those are found among the earlier rows of the arrays instead.
-- name: insert_webhooks
WITH new AS (
    SELECT *
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::text[], $8::text[], $9::bigint[]) WITH ORDINALITY
         AS n (event_id, dispatch_uuid, application_id, kind, message_uuid, status, url,
               payload, next_attempt_at_ms, position)
)
INSERT INTO webhooks
    (event_id, dispatch_uuid, application_id, kind, message_uuid, status, url, payload, state,
     next_attempt_at_ms, created_at_ms)
SELECT n.event_id, n.dispatch_uuid, n.application_id, n.kind, n.message_uuid, n.status, n.url,
       n.payload,
       CASE WHEN n.kind = 'final_report' AND (
                EXISTS (SELECT 1 FROM webhooks w
                        WHERE w.dispatch_uuid = n.dispatch_uuid AND w.state = 'pending')
                OR EXISTS (SELECT 1 FROM new e
                           WHERE e.dispatch_uuid = n.dispatch_uuid AND e.position < n.position
                             AND e.kind <> 'final_report'))
            THEN 'held' ELSE 'pending' END,
       n.next_attempt_at_ms, $10::bigint
FROM new n
ORDER BY n.position;

-- name: complete_send
UPDATE messages
SET send_state = $1, provider_message_id = $2, last_error = $3, lease_until_ms = NULL,
    lease_owner = NULL
WHERE message_uuid = $4;

-- name: insert_inbox
INSERT INTO inbox (message_uuid, status, error_code, error_reason, price, due_at_ms)
SELECT * FROM unnest($1::text[], $2::text[], $3::integer[], $4::text[], $5::text[],
                     $6::bigint[]);

-- name: delete_inbox
DELETE FROM inbox WHERE id = $1;

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

-- One walk of the due index: a pending webhook whose lease ran out is still pending and due.
-- name: claim_webhooks
WITH due AS MATERIALIZED (
    SELECT id FROM webhooks
    WHERE state = 'pending' AND next_attempt_at_ms <= $3
      AND (lease_until_ms IS NULL OR lease_until_ms <= $3)
      AND application_id <> ALL ($4::text[])
    ORDER BY next_attempt_at_ms
    LIMIT $5
    FOR UPDATE SKIP LOCKED
)
UPDATE webhooks w SET lease_until_ms = $1, lease_owner = $2, attempts = w.attempts + 1
WHERE w.id IN (SELECT id FROM due)
RETURNING w.id, w.event_id, w.dispatch_uuid, w.application_id, w.url, w.payload, w.attempts,
          w.created_at_ms;

-- The earliest time a webhook becomes claimable: walks the due index past the few in flight.
-- name: next_webhook_due
SELECT least(
    (SELECT next_attempt_at_ms FROM webhooks
     WHERE state = 'pending' AND lease_until_ms IS NULL
     ORDER BY next_attempt_at_ms LIMIT 1),
    (SELECT min(lease_until_ms) FROM webhooks WHERE lease_until_ms IS NOT NULL));

-- name: record_webhook_attempts
UPDATE webhooks w
SET state = a.state, next_attempt_at_ms = coalesce(a.next_attempt_at_ms, w.next_attempt_at_ms),
    lease_until_ms = NULL, lease_owner = NULL, last_status_code = a.status_code,
    last_error = a.error, delivered_at_ms = a.delivered_at_ms
FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::integer[], $5::text[], $6::bigint[])
     AS a (id, state, next_attempt_at_ms, status_code, error, delivered_at_ms)
WHERE w.id = a.id;

-- name: release_final_reports
UPDATE webhooks h SET state = 'pending'
WHERE h.dispatch_uuid = ANY ($1::text[]) AND h.state = 'held'
  AND NOT EXISTS (SELECT 1 FROM webhooks p
                  WHERE p.dispatch_uuid = h.dispatch_uuid AND p.state = 'pending');

-- Held final reports whose workflow has nothing left to deliver. The release after each
-- recorded attempt does this for its own workflows; this catches the rare race in which a
-- transition held its report while the last pending webhook was being recorded.
-- name: release_settled_final_reports
UPDATE webhooks h SET state = 'pending'
WHERE h.state = 'held'
  AND NOT EXISTS (SELECT 1 FROM webhooks p
                  WHERE p.dispatch_uuid = h.dispatch_uuid AND p.state = 'pending');

-- name: list_webhooks
SELECT event_id, kind, message_uuid, status, url, state, attempts,
       CASE WHEN state = 'pending' THEN next_attempt_at_ms END AS next_attempt_at_ms,
       last_status_code, last_error, created_at_ms, delivered_at_ms
FROM webhooks WHERE dispatch_uuid = $1 ORDER BY id;

-- Lookups ----------------------------------------------------------------------------------------

-- name: message_owner
SELECT m.message_uuid, m.dispatch_uuid, w.application_id
FROM messages m JOIN workflows w ON w.dispatch_uuid = m.dispatch_uuid
WHERE m.message_uuid = $1;

-- name: unstarted_workflows
SELECT dispatch_uuid FROM workflows WHERE state_json IS NULL LIMIT $1;

-- Sandbox provider -------------------------------------------------------------------------------

-- name: sandbox_record_send
INSERT INTO sandbox_sends (message_uuid, channel, recipient, outcome, attempts, first_sent_at_ms)
VALUES ($1, $2, $3, $4, 1, $5)
ON CONFLICT (message_uuid) DO UPDATE SET attempts = sandbox_sends.attempts + 1
RETURNING attempts;

-- Wake-ups across processes ----------------------------------------------------------------------

-- name: notify
SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload;
