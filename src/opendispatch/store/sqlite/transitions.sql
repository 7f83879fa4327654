-- The SQLite write strategy's queries (see transitions.py): one event's transition written
-- row by row inside the group commit's transaction. Rows come from store/transition_rows.py.

-- The workflow an event is for (by its id, or by one of its messages' ids), with the
-- provider statuses of its messages waiting in the inbox, in the order they happened (a JSON
-- array: one statement for all of it). Not if its application was deleted: then the event
-- changes nothing (its statuses are consumed all the same).
-- name: load_event_workflow
SELECT w.dispatch_uuid, w.application_id, w.template, w.status, w.request_json,
       w.created_at_ms, w.updated_at_ms, w.state_json, a.api_key, a.status_url,
       a.final_report_url,
       (SELECT json_group_array(json_object(
                   'id', i.id, 'message_uuid', i.message_uuid, 'status', i.status,
                   'error_code', i.error_code, 'error_reason', i.error_reason,
                   'price', i.price, 'due_at_ms', i.due_at_ms,
                   'occurred_at_ms', i.occurred_at_ms))
        FROM (SELECT i.* FROM inbox i JOIN messages m ON m.message_uuid = i.message_uuid
              WHERE m.dispatch_uuid = w.dispatch_uuid
              ORDER BY i.occurred_at_ms, i.id) AS i) AS inbox
FROM workflows w JOIN applications a ON a.application_id = w.application_id
WHERE w.dispatch_uuid = coalesce(
    :dispatch_uuid,
    (SELECT dispatch_uuid FROM messages WHERE message_uuid = :message_uuid))
  AND a.deleted_at_ms IS NULL;

-- A row when the application may not start workflows: deleted (or purged) since the
-- request was authenticated. Read in the creating transaction: one writer, so no race.
-- name: application_gone
SELECT 1 AS gone
WHERE NOT EXISTS (SELECT 1 FROM applications
                  WHERE application_id = :application_id AND deleted_at_ms IS NULL);

-- name: insert_workflow
INSERT INTO workflows
    (dispatch_uuid, application_id, template, status, request_json, created_at_ms, updated_at_ms,
     state_json, due_at_ms, channels)
VALUES (:dispatch_uuid, :application_id, :template, :status, :request_json, :created_at_ms,
        :updated_at_ms, :state_json, :due_at_ms, :channels);

-- name: update_workflow
UPDATE workflows
SET state_json = :state_json, status = :status, due_at_ms = :due_at_ms,
    updated_at_ms = :updated_at_ms
WHERE dispatch_uuid = :dispatch_uuid;

-- name: insert_send
INSERT INTO messages
    (message_uuid, dispatch_uuid, application_id, step, channel, provider, payload_json,
     send_state, next_attempt_at_ms, created_at_ms)
VALUES (:message_uuid, :dispatch_uuid, :application_id, :step, :channel, :provider,
        :payload_json, 'pending', :next_attempt_at_ms, :created_at_ms);

-- name: cancel_send
UPDATE messages SET send_state = 'cancelled', lease_until_ms = NULL
WHERE message_uuid = :message_uuid AND send_state = 'pending';

-- A final report is held while its workflow still has webhooks to deliver (the same
-- transition's status webhooks are inserted before it, so they count).
-- name: insert_webhook
INSERT INTO webhooks
    (event_id, dispatch_uuid, application_id, kind, message_uuid, status, url, payload, state,
     next_attempt_at_ms, created_at_ms)
SELECT :event_id, :dispatch_uuid, :application_id, :kind, :message_uuid, :status, :url,
       :payload,
       CASE WHEN :kind = 'final_report' AND EXISTS (
                SELECT 1 FROM webhooks WHERE dispatch_uuid = :dispatch_uuid AND state = 'pending')
            THEN 'held' ELSE 'pending' END,
       :next_attempt_at_ms, :created_at_ms;

-- name: complete_send
UPDATE messages
SET send_state = :send_state, provider_message_id = :provider_message_id, last_error = :error,
    provider = coalesce(nullif(:provider, ''), provider), lease_until_ms = NULL
WHERE message_uuid = :message_uuid;

-- name: delete_inbox
DELETE FROM inbox WHERE id = :id;
