-- The failover engine's state lives on the workflow row; the workflow's one timer is an
-- indexed column, so pending workflows cost no memory and the earliest deadline is one
-- index lookup away.
ALTER TABLE workflows ADD COLUMN state_json TEXT;
ALTER TABLE workflows ADD COLUMN due_at_ms INTEGER;
CREATE INDEX workflows_due ON workflows (due_at_ms) WHERE due_at_ms IS NOT NULL;

-- Every message a workflow sends. It is the send outbox (send_state, attempts, lease), and
-- the way a provider's status finds its workflow (by message_uuid).
CREATE TABLE messages (
    message_uuid        TEXT PRIMARY KEY,
    dispatch_uuid       TEXT NOT NULL REFERENCES workflows (dispatch_uuid),
    step                INTEGER NOT NULL,
    channel             TEXT NOT NULL,
    provider            TEXT NOT NULL,
    payload_json        TEXT NOT NULL,       -- the step's message: to, from, message
    send_state          TEXT NOT NULL,       -- pending | sending | sent | failed | cancelled
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms  INTEGER NOT NULL,
    lease_until_ms      INTEGER,
    provider_message_id TEXT,
    last_error          TEXT,
    created_at_ms       INTEGER NOT NULL
);
CREATE INDEX messages_due ON messages (next_attempt_at_ms) WHERE send_state = 'pending';
CREATE INDEX messages_leased ON messages (lease_until_ms) WHERE send_state = 'sending';
CREATE INDEX messages_by_workflow ON messages (dispatch_uuid, step);

-- Webhooks to deliver, at least once. Rows stay after delivery: GET shows their state.
CREATE TABLE webhooks (
    id                 INTEGER PRIMARY KEY,  -- also the order of a workflow's webhooks
    event_id           TEXT NOT NULL,        -- sent as `webhook-id`: receivers drop repeats
    dispatch_uuid      TEXT NOT NULL,
    application_id     TEXT NOT NULL,
    kind               TEXT NOT NULL,        -- message_status | final_report
    message_uuid       TEXT,
    status             TEXT NOT NULL,        -- the message status, or the workflow's outcome
    url                TEXT NOT NULL,
    payload            TEXT NOT NULL,        -- the exact body, signed at each attempt
    -- pending | delivered | dead, or held: a final report waiting for its workflow's earlier
    -- webhooks to be delivered or dead (released when the last of them settles)
    state              TEXT NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER NOT NULL,
    lease_until_ms     INTEGER,
    last_status_code   INTEGER,
    last_error         TEXT,
    created_at_ms      INTEGER NOT NULL,
    delivered_at_ms    INTEGER
);
CREATE INDEX webhooks_due ON webhooks (next_attempt_at_ms) WHERE state = 'pending';
CREATE INDEX webhooks_leased ON webhooks (lease_until_ms) WHERE lease_until_ms IS NOT NULL;
CREATE INDEX webhooks_by_workflow ON webhooks (dispatch_uuid, state, id);
CREATE INDEX webhooks_held ON webhooks (dispatch_uuid) WHERE state = 'held';

-- Provider status events waiting to be applied, at or after `due_at_ms`. The sandbox
-- schedules its simulated statuses here, so they survive a restart like real callbacks.
CREATE TABLE inbox (
    id             INTEGER PRIMARY KEY,
    message_uuid   TEXT NOT NULL,
    status         TEXT NOT NULL,
    error_code     INTEGER,
    error_reason   TEXT,
    price          TEXT,
    due_at_ms      INTEGER NOT NULL,
    lease_until_ms INTEGER
);
CREATE INDEX inbox_due ON inbox (due_at_ms) WHERE lease_until_ms IS NULL;
CREATE INDEX inbox_leased ON inbox (lease_until_ms) WHERE lease_until_ms IS NOT NULL;

-- The sandbox provider's own record of what it was asked to send, written before it
-- answers (as a real provider's would be): tests read it to prove no step went out twice.
CREATE TABLE sandbox_sends (
    message_uuid     TEXT PRIMARY KEY,
    channel          TEXT NOT NULL,
    recipient        TEXT NOT NULL,
    outcome          TEXT NOT NULL,
    attempts         INTEGER NOT NULL,
    first_sent_at_ms INTEGER NOT NULL
);
