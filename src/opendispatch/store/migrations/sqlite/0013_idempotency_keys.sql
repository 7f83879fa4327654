-- `Idempotency-Key` on POST /v0.1/dispatch: the first request with a key, per application,
-- stores the key with the SHA-256 of its body and the workflow it created, in the transaction
-- that stores the workflow. The primary key lets only one request create a workflow per key;
-- the others find the row and answer from it. Kept 24 hours (retention deletes older ones; a
-- key older than that found here counts as forgotten and is taken over).
CREATE TABLE idempotency_keys (
    application_id  TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    dispatch_uuid   TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (application_id, idempotency_key)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at_ms);
