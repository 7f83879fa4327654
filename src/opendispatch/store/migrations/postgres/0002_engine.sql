-- The failover engine's state lives on the workflow row; the workflow's one timer is an
-- indexed column, so pending workflows cost no memory and the earliest deadline is one
-- index lookup away.
ALTER TABLE workflows ADD COLUMN state_json text;
ALTER TABLE workflows ADD COLUMN due_at_ms bigint;
-- Every transition checks and bumps it: two processes applying events to one workflow at once
-- cannot both win (the loser reads the new state and decides again).
ALTER TABLE workflows ADD COLUMN version bigint NOT NULL DEFAULT 0;
CREATE INDEX workflows_due ON workflows (due_at_ms) WHERE due_at_ms IS NOT NULL;

-- Every message a workflow sends. It is the send outbox (send_state, attempts, lease), and
-- the way a provider's status finds its workflow (by message_uuid). Several processes share
-- the outbox: a claim stamps `lease_until_ms` and `lease_owner` (which process holds it), and
-- a lease that has run out may be claimed again by anyone.
CREATE TABLE messages (
    message_uuid        text COLLATE "C" PRIMARY KEY,
    dispatch_uuid       text COLLATE "C" NOT NULL REFERENCES workflows (dispatch_uuid),
    step                integer NOT NULL,
    channel             text NOT NULL,
    provider            text NOT NULL,
    payload_json        text NOT NULL,       -- the step's message: to, from, message
    send_state          text NOT NULL,       -- pending | sending | sent | failed | cancelled
    attempts            integer NOT NULL DEFAULT 0,
    next_attempt_at_ms  bigint NOT NULL,
    lease_until_ms      bigint,
    lease_owner         text,
    provider_message_id text,
    last_error          text,
    created_at_ms       bigint NOT NULL
);
CREATE INDEX messages_due ON messages (next_attempt_at_ms) WHERE send_state = 'pending';
CREATE INDEX messages_leased ON messages (lease_until_ms) WHERE send_state = 'sending';
CREATE INDEX messages_by_workflow ON messages (dispatch_uuid, step);

-- Webhooks to deliver, at least once. Rows stay after delivery: GET shows their state.
CREATE TABLE webhooks (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- also their order
    event_id           text NOT NULL,        -- sent as `webhook-id`: receivers drop repeats
    dispatch_uuid      text COLLATE "C" NOT NULL,
    application_id     text NOT NULL,
    kind               text NOT NULL,        -- message_status | final_report
    message_uuid       text COLLATE "C",
    status             text NOT NULL,        -- the message status, or the workflow's outcome
    url                text NOT NULL,
    payload            text NOT NULL,        -- the exact body, signed at each attempt
    -- pending | delivered | dead, or held: a final report waiting for its workflow's earlier
    -- webhooks to be delivered or dead (released when the last of them settles)
    state              text NOT NULL,
    attempts           integer NOT NULL DEFAULT 0,
    next_attempt_at_ms bigint NOT NULL,
    lease_until_ms     bigint,
    lease_owner        text,
    last_status_code   integer,
    last_error         text,
    created_at_ms      bigint NOT NULL,
    delivered_at_ms    bigint
);
CREATE INDEX webhooks_due ON webhooks (next_attempt_at_ms) WHERE state = 'pending';
CREATE INDEX webhooks_leased ON webhooks (lease_until_ms) WHERE lease_until_ms IS NOT NULL;
CREATE INDEX webhooks_by_workflow ON webhooks (dispatch_uuid, state, id);
CREATE INDEX webhooks_held ON webhooks (dispatch_uuid) WHERE state = 'held';

-- Provider status events waiting to be applied, at or after `due_at_ms`. The sandbox
-- schedules its simulated statuses here, so they survive a restart like real callbacks.
CREATE TABLE inbox (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_uuid   text COLLATE "C" NOT NULL,
    status         text NOT NULL,
    error_code     integer,
    error_reason   text,
    price          text,
    due_at_ms      bigint NOT NULL,
    lease_until_ms bigint,
    lease_owner    text
);
CREATE INDEX inbox_due ON inbox (due_at_ms) WHERE lease_until_ms IS NULL;
CREATE INDEX inbox_leased ON inbox (lease_until_ms) WHERE lease_until_ms IS NOT NULL;

-- The sandbox provider's own record of what it was asked to send, written before it
-- answers (as a real provider's would be): tests read it to prove no step went out twice.
CREATE TABLE sandbox_sends (
    message_uuid     text COLLATE "C" PRIMARY KEY,
    channel          text NOT NULL,
    recipient        text NOT NULL,
    outcome          text NOT NULL,
    attempts         integer NOT NULL,
    first_sent_at_ms bigint NOT NULL
);
