-- Named queries for the SQLite store (see store/queries.py). Parameters are positional (?).

-- name: insert_account
INSERT INTO accounts (api_key, api_secret_hash, signature_secret, created_at_ms)
VALUES (?, ?, ?, ?);

-- name: insert_application
INSERT INTO applications
    (application_id, api_key, name, status_url, final_report_url, public_key_pem, created_at_ms)
VALUES (?, ?, ?, ?, ?, ?, ?);

-- name: list_applications
SELECT application_id, name, api_key, status_url, final_report_url, created_at_ms
FROM applications
ORDER BY created_at_ms, application_id;

-- name: credentials_by_api_key
SELECT a.application_id, a.name, a.api_key, a.status_url, a.final_report_url, a.created_at_ms,
       c.api_secret_hash, c.signature_secret, a.public_key_pem
FROM applications a JOIN accounts c ON c.api_key = a.api_key
WHERE a.api_key = ?;

-- name: credentials_by_application_id
SELECT a.application_id, a.name, a.api_key, a.status_url, a.final_report_url, a.created_at_ms,
       c.api_secret_hash, c.signature_secret, a.public_key_pem
FROM applications a JOIN accounts c ON c.api_key = a.api_key
WHERE a.application_id = ?;

-- name: insert_workflow
INSERT INTO workflows
    (dispatch_uuid, application_id, template, status, request_json, created_at_ms, updated_at_ms)
VALUES (?, ?, ?, ?, ?, ?, ?);

-- name: get_workflow
SELECT dispatch_uuid, application_id, template, status, request_json, created_at_ms, updated_at_ms
FROM workflows
WHERE dispatch_uuid = ? AND application_id = ?;

-- name: list_workflows
SELECT dispatch_uuid, application_id, template, status, request_json, created_at_ms, updated_at_ms
FROM workflows
WHERE application_id = ? AND dispatch_uuid < ?
ORDER BY dispatch_uuid DESC
LIMIT ?;
