-- The PostgreSQL write strategy's queries (see transitions.py). A batch of events is read
-- with one statement and written with one: each column of the rows from
-- store/transition_rows.py is bound as an array (:sends_message_uuid, ...) and unnested.

-- What a batch of events needs of their workflows, the version each transition must find
-- unchanged, and the provider statuses waiting in the inbox for their messages; `key` says
-- which event a row is for. A deleted application's workflows are not read: their events
-- change nothing. By workflow, or by one of its messages: two statements, because
-- the planner takes several times longer over their union (measured: 0.45 ms of planning per
-- batch, more than the read itself).
-- name: read_workflows
SELECT false AS by_message, w.dispatch_uuid AS key, w.dispatch_uuid, w.application_id,
       w.template, w.status, w.request_json, w.created_at_ms, w.updated_at_ms, w.state_json,
       a.api_key, a.status_url, a.final_report_url, w.version,
       (SELECT json_agg(json_build_object(
                   'id', i.id, 'message_uuid', i.message_uuid, 'status', i.status,
                   'error_code', i.error_code, 'error_reason', i.error_reason,
                   'price', i.price, 'due_at_ms', i.due_at_ms,
                   'occurred_at_ms', i.occurred_at_ms) ORDER BY i.occurred_at_ms, i.id)
        FROM inbox i JOIN messages m ON m.message_uuid = i.message_uuid
        WHERE m.dispatch_uuid = w.dispatch_uuid) AS inbox
FROM workflows w JOIN applications a ON a.application_id = w.application_id
WHERE w.dispatch_uuid = ANY (:keys::text[]) AND a.deleted_at_ms IS NULL;

-- name: read_workflows_of_messages
SELECT true AS by_message, k.message_uuid AS key, w.dispatch_uuid, w.application_id,
       w.template, w.status, w.request_json, w.created_at_ms, w.updated_at_ms, w.state_json,
       a.api_key, a.status_url, a.final_report_url, w.version,
       (SELECT json_agg(json_build_object(
                   'id', i.id, 'message_uuid', i.message_uuid, 'status', i.status,
                   'error_code', i.error_code, 'error_reason', i.error_reason,
                   'price', i.price, 'due_at_ms', i.due_at_ms,
                   'occurred_at_ms', i.occurred_at_ms) ORDER BY i.occurred_at_ms, i.id)
        FROM inbox i JOIN messages m ON m.message_uuid = i.message_uuid
        WHERE m.dispatch_uuid = w.dispatch_uuid) AS inbox
FROM messages k
JOIN workflows w ON w.dispatch_uuid = k.dispatch_uuid
JOIN applications a ON a.application_id = w.application_id
WHERE k.message_uuid = ANY (:keys::text[]) AND a.deleted_at_ms IS NULL;

-- After a few lost races: the same read for one event, holding the row until its transition
-- is written in the same transaction.
-- name: lock_workflow
SELECT false AS by_message, w.dispatch_uuid AS key, w.dispatch_uuid, w.application_id,
       w.template, w.status, w.request_json, w.created_at_ms, w.updated_at_ms, w.state_json,
       a.api_key, a.status_url, a.final_report_url, w.version,
       (SELECT json_agg(json_build_object(
                   'id', i.id, 'message_uuid', i.message_uuid, 'status', i.status,
                   'error_code', i.error_code, 'error_reason', i.error_reason,
                   'price', i.price, 'due_at_ms', i.due_at_ms,
                   'occurred_at_ms', i.occurred_at_ms) ORDER BY i.occurred_at_ms, i.id)
        FROM inbox i JOIN messages m ON m.message_uuid = i.message_uuid
        WHERE m.dispatch_uuid = w.dispatch_uuid) AS inbox
FROM workflows w JOIN applications a ON a.application_id = w.application_id
WHERE w.dispatch_uuid = :key AND a.deleted_at_ms IS NULL
FOR UPDATE OF w;

-- name: lock_workflow_of_message
SELECT true AS by_message, :key::text AS key, w.dispatch_uuid, w.application_id, w.template,
       w.status, w.request_json, w.created_at_ms, w.updated_at_ms, w.state_json, a.api_key,
       a.status_url, a.final_report_url, w.version,
       (SELECT json_agg(json_build_object(
                   'id', i.id, 'message_uuid', i.message_uuid, 'status', i.status,
                   'error_code', i.error_code, 'error_reason', i.error_reason,
                   'price', i.price, 'due_at_ms', i.due_at_ms,
                   'occurred_at_ms', i.occurred_at_ms) ORDER BY i.occurred_at_ms, i.id)
        FROM inbox i JOIN messages m ON m.message_uuid = i.message_uuid
        WHERE m.dispatch_uuid = w.dispatch_uuid) AS inbox
FROM workflows w JOIN applications a ON a.application_id = w.application_id
WHERE w.dispatch_uuid = (SELECT m.dispatch_uuid FROM messages m WHERE m.message_uuid = :key)
  AND a.deleted_at_ms IS NULL
FOR UPDATE OF w;

-- A batch of events' transitions, each with its effects, in one statement. A workflow's
-- transition is written only if its row is still at the version it was read at and no other
-- statement holds it right now (SKIP LOCKED: no waiting, so batches of two processes cannot
-- deadlock); every effect row carries its workflow's id and is written only if that workflow
-- was (`changed`). Returns the workflows written: an event whose workflow is missing lost a
-- race, and is read and decided again. Bookkeeping rows (a send completed, an inbox row
-- consumed) whose `gate` is NULL belong to events that changed no workflow and are written
-- unconditionally.
-- name: write_transitions
WITH input AS (
    SELECT *
    FROM unnest(:workflows_dispatch_uuid::text[], :workflows_version::bigint[],
                :workflows_state_json::text[], :workflows_status::text[],
                :workflows_due_at_ms::bigint[], :workflows_updated_at_ms::bigint[])
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
    RETURNING w.dispatch_uuid
), sends AS (
    INSERT INTO messages
        (message_uuid, dispatch_uuid, application_id, step, channel, provider, payload_json,
         send_state, next_attempt_at_ms, created_at_ms)
    SELECT s.message_uuid, s.dispatch_uuid, s.application_id, s.step, s.channel, s.provider,
           s.payload_json, 'pending', s.next_attempt_at_ms, s.created_at_ms
    FROM unnest(:sends_dispatch_uuid::text[], :sends_message_uuid::text[],
                :sends_application_id::text[], :sends_step::integer[], :sends_channel::text[],
                :sends_provider::text[], :sends_payload_json::text[],
                :sends_next_attempt_at_ms::bigint[], :sends_created_at_ms::bigint[])
         AS s (dispatch_uuid, message_uuid, application_id, step, channel, provider,
               payload_json, next_attempt_at_ms, created_at_ms)
    WHERE s.dispatch_uuid IN (SELECT dispatch_uuid FROM changed)
), cancels AS (
    UPDATE messages m
    SET send_state = 'cancelled', lease_until_ms = NULL, lease_owner = NULL
    FROM unnest(:cancels_dispatch_uuid::text[], :cancels_message_uuid::text[])
         AS x (dispatch_uuid, message_uuid)
    WHERE m.message_uuid = x.message_uuid AND m.send_state = 'pending'
      AND x.dispatch_uuid IN (SELECT dispatch_uuid FROM changed)
), new_webhooks AS (
    SELECT n.*
    FROM unnest(:webhooks_dispatch_uuid::text[], :webhooks_application_id::text[],
                :webhooks_event_id::text[], :webhooks_kind::text[],
                :webhooks_message_uuid::text[], :webhooks_status::text[],
                :webhooks_url::text[], :webhooks_payload::text[],
                :webhooks_next_attempt_at_ms::bigint[], :webhooks_created_at_ms::bigint[],
                :webhooks_position::integer[])
         AS n (dispatch_uuid, application_id, event_id, kind, message_uuid, status, url,
               payload, next_attempt_at_ms, created_at_ms, position)
    WHERE n.dispatch_uuid IN (SELECT dispatch_uuid FROM changed)
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
           n.next_attempt_at_ms, n.created_at_ms
    FROM new_webhooks n
    ORDER BY n.dispatch_uuid, n.position
), completed AS (
    UPDATE messages m
    SET send_state = d.send_state, provider_message_id = d.provider_message_id,
        last_error = d.error, provider = coalesce(nullif(d.provider, ''), m.provider),
        lease_until_ms = NULL, lease_owner = NULL
    FROM unnest(:completed_gate::text[], :completed_message_uuid::text[],
                :completed_send_state::text[], :completed_provider::text[],
                :completed_provider_message_id::text[], :completed_error::text[])
         AS d (gate, message_uuid, send_state, provider, provider_message_id, error)
    WHERE m.message_uuid = d.message_uuid
      AND (d.gate IS NULL OR d.gate IN (SELECT dispatch_uuid FROM changed))
), inbox_consumed AS (
    DELETE FROM inbox q
    USING unnest(:consumed_gate::text[], :consumed_id::bigint[]) AS d (gate, id)
    WHERE q.id = d.id AND (d.gate IS NULL OR d.gate IN (SELECT dispatch_uuid FROM changed))
)
SELECT dispatch_uuid FROM changed;

-- New workflows with their first transitions, in one statement; returns those created.
-- Only for applications not deleted: their rows are share-locked, so a deletion under way
-- (which updates the row first) is waited for, and then seen; a deletion that starts later
-- waits for this statement's transaction, and then ends what it created. A workflow not
-- returned was refused (its application was deleted since its request was authenticated).
-- name: create_workflows
WITH allowed AS MATERIALIZED (
    SELECT application_id FROM applications
    WHERE application_id = ANY (:new_workflows_application_id::text[])
      AND deleted_at_ms IS NULL
    ORDER BY application_id
    FOR SHARE
), workflow AS (
    INSERT INTO workflows
        (dispatch_uuid, application_id, template, status, request_json, created_at_ms,
         updated_at_ms, state_json, due_at_ms, channels)
    SELECT n.*
    FROM unnest(:new_workflows_dispatch_uuid::text[], :new_workflows_application_id::text[],
                :new_workflows_template::text[], :new_workflows_status::text[],
                :new_workflows_request_json::text[], :new_workflows_created_at_ms::bigint[],
                :new_workflows_updated_at_ms::bigint[], :new_workflows_state_json::text[],
                :new_workflows_due_at_ms::bigint[], :new_workflows_channels::text[])
         AS n (dispatch_uuid, application_id, template, status, request_json, created_at_ms,
               updated_at_ms, state_json, due_at_ms, channels)
    WHERE n.application_id IN (SELECT application_id FROM allowed)
    RETURNING dispatch_uuid
), sends AS (
    INSERT INTO messages
        (message_uuid, dispatch_uuid, application_id, step, channel, provider, payload_json,
         send_state, next_attempt_at_ms, created_at_ms)
    SELECT s.message_uuid, s.dispatch_uuid, s.application_id, s.step, s.channel, s.provider,
           s.payload_json, 'pending', s.next_attempt_at_ms, s.created_at_ms
    FROM unnest(:sends_dispatch_uuid::text[], :sends_message_uuid::text[],
                :sends_application_id::text[], :sends_step::integer[], :sends_channel::text[],
                :sends_provider::text[], :sends_payload_json::text[],
                :sends_next_attempt_at_ms::bigint[], :sends_created_at_ms::bigint[])
         AS s (dispatch_uuid, message_uuid, application_id, step, channel, provider,
               payload_json, next_attempt_at_ms, created_at_ms)
    WHERE s.dispatch_uuid IN (SELECT dispatch_uuid FROM workflow)
), new_webhooks AS (
    SELECT *
    FROM unnest(:webhooks_dispatch_uuid::text[], :webhooks_application_id::text[],
                :webhooks_event_id::text[], :webhooks_kind::text[],
                :webhooks_message_uuid::text[], :webhooks_status::text[],
                :webhooks_url::text[], :webhooks_payload::text[],
                :webhooks_next_attempt_at_ms::bigint[], :webhooks_created_at_ms::bigint[],
                :webhooks_position::integer[])
         AS n (dispatch_uuid, application_id, event_id, kind, message_uuid, status, url,
               payload, next_attempt_at_ms, created_at_ms, position)
    WHERE n.dispatch_uuid IN (SELECT dispatch_uuid FROM workflow)
), webhooks_written AS (
    INSERT INTO webhooks
        (event_id, dispatch_uuid, application_id, kind, message_uuid, status, url, payload,
         state, next_attempt_at_ms, created_at_ms)
    SELECT n.event_id, n.dispatch_uuid, n.application_id, n.kind, n.message_uuid, n.status,
           n.url, n.payload,
           CASE WHEN n.kind = 'final_report' AND EXISTS (
                    SELECT 1 FROM new_webhooks e
                    WHERE e.dispatch_uuid = n.dispatch_uuid AND e.position < n.position
                      AND e.kind <> 'final_report')
                THEN 'held' ELSE 'pending' END,
           n.next_attempt_at_ms, n.created_at_ms
    FROM new_webhooks n
    ORDER BY n.dispatch_uuid, n.position
)
SELECT dispatch_uuid FROM workflow;
