-- The operators' dashboard (`/dashboard`). The same tables as SQLite's 0013; read it for why.
CREATE TABLE operators (
    name          text PRIMARY KEY,
    token_hash    text NOT NULL,
    created_at_ms bigint NOT NULL
);

-- Sessions live here, so that every server process on the database knows every session.
CREATE TABLE operator_sessions (
    id_hash       text PRIMARY KEY,
    operator      text NOT NULL REFERENCES operators (name) ON DELETE CASCADE,
    created_at_ms bigint NOT NULL,
    expires_at_ms bigint NOT NULL
);
CREATE INDEX operator_sessions_by_operator ON operator_sessions (operator);
CREATE INDEX operator_sessions_by_expiry ON operator_sessions (expires_at_ms);

-- Each workflow's terms (`to:<number or id>`, `channel:<type>` of every step), for the
-- recipient and channel filters. Triggers keep them, one statement's rows at a time (the
-- write strategy inserts a batch of workflows in one statement). A submitted text may hold
-- the escape `\u0000`, which PostgreSQL cannot turn into text: it becomes `\u0001` first.
CREATE TABLE workflow_terms (
    term           text COLLATE "C" NOT NULL,
    dispatch_uuid  text COLLATE "C" NOT NULL,
    application_id text NOT NULL,
    PRIMARY KEY (term, dispatch_uuid)
);

CREATE FUNCTION workflow_terms_of(request_json text) RETURNS SETOF text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT DISTINCT CASE field.key WHEN 'type' THEN 'channel:' ELSE 'to:' END || field.value
    FROM (SELECT replace(request_json, E'\\u0000', E'\\u0001')::json -> 'workflow' AS steps)
         AS document,
         json_array_elements(CASE json_typeof(document.steps)
                             WHEN 'array' THEN document.steps ELSE '[]' END) AS step,
         json_each_text(CASE json_typeof(step -> 'to')
                        WHEN 'object' THEN step -> 'to' ELSE '{}' END) AS field
    WHERE field.key IN ('type', 'number', 'id')
      AND json_typeof((step -> 'to') -> field.key) = 'string'
$$;

CREATE FUNCTION workflow_terms_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO workflow_terms (term, dispatch_uuid, application_id)
    SELECT found.term, added.dispatch_uuid, added.application_id
    FROM added, workflow_terms_of(added.request_json) AS found (term)
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

CREATE FUNCTION workflow_terms_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM workflow_terms t
    USING removed, workflow_terms_of(removed.request_json) AS found (term)
    WHERE t.term = found.term AND t.dispatch_uuid = removed.dispatch_uuid;
    RETURN NULL;
END
$$;

CREATE TRIGGER workflow_terms_insert AFTER INSERT ON workflows
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION workflow_terms_insert();
CREATE TRIGGER workflow_terms_delete AFTER DELETE ON workflows
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION workflow_terms_delete();

-- The workflows stored before: their terms now.
INSERT INTO workflow_terms (term, dispatch_uuid, application_id)
SELECT found.term, w.dispatch_uuid, w.application_id
FROM workflows AS w, workflow_terms_of(w.request_json) AS found (term)
ON CONFLICT DO NOTHING;

-- The statuses that are few, across applications (see SQLite's 0013).
CREATE INDEX workflows_not_completed ON workflows (status, dispatch_uuid, application_id)
    WHERE status <> 'completed';

-- Dead and failing webhooks across applications, newest first.
CREATE INDEX webhooks_dead_everywhere ON webhooks (id) WHERE state = 'dead';
CREATE INDEX webhooks_failing ON webhooks (id)
    WHERE state = 'pending' AND last_error IS NOT NULL;
