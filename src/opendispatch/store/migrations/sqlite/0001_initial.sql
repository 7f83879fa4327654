-- Accounts own credentials; each application belongs to one account. `apps create` makes one
-- of each, so HTTP Basic (api_key:api_secret) names exactly one application.
CREATE TABLE accounts (
    api_key          TEXT PRIMARY KEY,
    api_secret_hash  TEXT NOT NULL,
    signature_secret TEXT NOT NULL,
    created_at_ms    INTEGER NOT NULL
);

CREATE TABLE applications (
    application_id   TEXT PRIMARY KEY,
    api_key          TEXT NOT NULL UNIQUE REFERENCES accounts (api_key),
    name             TEXT NOT NULL,
    status_url       TEXT NOT NULL,
    final_report_url TEXT,
    public_key_pem   TEXT NOT NULL,
    created_at_ms    INTEGER NOT NULL
);

-- dispatch_uuid is a UUIDv7: time-ordered, so inserts append to the index and
-- "newest first" is "largest id first".
CREATE TABLE workflows (
    dispatch_uuid  TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications (application_id),
    template       TEXT NOT NULL,
    status         TEXT NOT NULL,
    request_json  TEXT NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL
);

CREATE INDEX workflows_by_application ON workflows (application_id, dispatch_uuid);
