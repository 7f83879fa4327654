-- The operators' dashboard (`/dashboard`).
--
-- Operators are people, apart from applications' API keys (`opendispatch operators create`).
-- A login token is 256 random bits: its SHA-256 is enough to keep (a slow hash protects
-- guessable passwords, and nobody guesses 256 bits), compared in constant time.
CREATE TABLE operators (
    name          TEXT PRIMARY KEY,
    token_hash    TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);

-- A signed-in browser: the SHA-256 of the random session id its cookie holds (a copy of this
-- table opens no session), whose it is and until when. In the database, so that every server
-- process on one PostgreSQL knows every session.
CREATE TABLE operator_sessions (
    id_hash       TEXT PRIMARY KEY,
    operator      TEXT NOT NULL REFERENCES operators (name) ON DELETE CASCADE,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
CREATE INDEX operator_sessions_by_operator ON operator_sessions (operator);
CREATE INDEX operator_sessions_by_expiry ON operator_sessions (expires_at_ms);

-- The workflow list filters by recipient and by channel across applications. Both live in
-- the submitted JSON, which a filter cannot read a million rows of within a page's time. So
-- each workflow's terms, `to:<number or id>` and `channel:<type>` of every step, are kept in
-- a table keyed by term then id: a page of one term is a walk of its own range, newest first.
-- A trigger writes them with the workflow, in the same statement: the write path does not
-- change, every process writing the table is covered (also one not yet upgraded, on
-- PostgreSQL), and they cannot disagree with the JSON. Retention's deletes take them away.
-- Measured (inserts into an in-memory database): 13.2 us of CPU per workflow instead of 1.5;
-- the same rows written from Python would cost 4 us more instead of 12, but through every
-- write strategy. A failover workflow costs the server about 1.5 ms of CPU in all.
-- json_valid: a document SQLite could not read must never fail the workflow's insert.
CREATE TABLE workflow_terms (
    term           TEXT NOT NULL,
    dispatch_uuid  TEXT NOT NULL,
    application_id TEXT NOT NULL,
    PRIMARY KEY (term, dispatch_uuid)
) WITHOUT ROWID;

CREATE TRIGGER workflow_terms_insert AFTER INSERT ON workflows
BEGIN
    INSERT OR IGNORE INTO workflow_terms (term, dispatch_uuid, application_id)
    SELECT CASE field.key WHEN 'type' THEN 'channel:' ELSE 'to:' END || field.atom,
           NEW.dispatch_uuid, NEW.application_id
    FROM json_each(CASE WHEN json_valid(NEW.request_json) THEN NEW.request_json END,
                   '$.workflow') AS step,
         json_each(step.value, '$.to') AS field
    WHERE step.type = 'object' AND field.key IN ('type', 'number', 'id')
      AND field.type = 'text';
END;

CREATE TRIGGER workflow_terms_delete AFTER DELETE ON workflows
BEGIN
    DELETE FROM workflow_terms
    WHERE dispatch_uuid = OLD.dispatch_uuid AND term IN (
        SELECT CASE field.key WHEN 'type' THEN 'channel:' ELSE 'to:' END || field.atom
        FROM json_each(CASE WHEN json_valid(OLD.request_json) THEN OLD.request_json END,
                       '$.workflow') AS step,
             json_each(step.value, '$.to') AS field
        WHERE step.type = 'object' AND field.key IN ('type', 'number', 'id')
          AND field.type = 'text');
END;

-- The workflows stored before: their terms now.
INSERT OR IGNORE INTO workflow_terms (term, dispatch_uuid, application_id)
SELECT CASE field.key WHEN 'type' THEN 'channel:' ELSE 'to:' END || field.atom,
       w.dispatch_uuid, w.application_id
FROM workflows AS w,
     json_each(CASE WHEN json_valid(w.request_json) THEN w.request_json END,
               '$.workflow') AS step,
     json_each(step.value, '$.to') AS field
WHERE step.type = 'object' AND field.key IN ('type', 'number', 'id') AND field.type = 'text';

-- A status across applications, for the statuses that are few (`error` among a million
-- `completed`): their own range. `completed` stays out (a workflow leaves this index as it
-- completes), so the index stays small; a list of completed workflows walks them all anyway.
-- The application is in it so that a walk checks it without reading the row (measured on a
-- million workflows: `error` of a 1 % application, 10,000 rows walked, 11.5 ms -> 0.4 ms).
CREATE INDEX workflows_not_completed ON workflows (status, dispatch_uuid, application_id)
    WHERE status <> 'completed';

-- Dead and failing webhooks across applications, newest first. Both are few among many
-- delivered, and a webhook delivered at the first try never enters either index.
CREATE INDEX webhooks_dead_everywhere ON webhooks (id) WHERE state = 'dead';
CREATE INDEX webhooks_failing ON webhooks (id)
    WHERE state = 'pending' AND last_error IS NOT NULL;
