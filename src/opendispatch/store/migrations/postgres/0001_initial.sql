-- The PostgreSQL schema mirrors the SQLite one (migrations/sqlite), table for table. Ids are
-- text UUIDs as there, compared byte-wise (COLLATE "C") so that "newest first" is the same
-- order whatever the database's locale; every *_ms column is a bigint of Unix milliseconds.

-- Accounts own credentials; each application belongs to one account. `apps create` makes one
-- of each, so HTTP Basic (api_key:api_secret) names exactly one application.
CREATE TABLE accounts (
    api_key          text PRIMARY KEY,
    api_secret_hash  text NOT NULL,
    signature_secret text NOT NULL,
    created_at_ms    bigint NOT NULL
);

CREATE TABLE applications (
    application_id   text PRIMARY KEY,
    api_key          text NOT NULL UNIQUE REFERENCES accounts (api_key),
    name             text NOT NULL,
    status_url       text NOT NULL,
    final_report_url text,
    public_key_pem   text NOT NULL,
    created_at_ms    bigint NOT NULL
);

-- dispatch_uuid is a UUIDv7: time-ordered, so inserts append to the index and
-- "newest first" is "largest id first".
CREATE TABLE workflows (
    dispatch_uuid  text COLLATE "C" PRIMARY KEY,
    application_id text NOT NULL REFERENCES applications (application_id),
    template       text NOT NULL,
    status         text NOT NULL,
    request_json   text NOT NULL,
    created_at_ms  bigint NOT NULL,
    updated_at_ms  bigint NOT NULL
);

CREATE INDEX workflows_by_application ON workflows (application_id, dispatch_uuid);
