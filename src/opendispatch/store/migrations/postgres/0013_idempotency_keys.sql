-- `Idempotency-Key` on POST /v0.1/dispatch: the first request with a key, per application,
-- stores the key with the SHA-256 of its body and the workflow it created, in the transaction
-- that stores the workflow. The primary key lets only one request create a workflow per key,
-- whichever process it reaches: a second insert of the key waits for the first transaction,
-- then finds its row and answers from it. Kept 24 hours (retention deletes older ones; a key
-- older than that found here counts as forgotten and is taken over).
CREATE TABLE idempotency_keys (
    application_id  text NOT NULL,
    idempotency_key text NOT NULL,
    request_hash    text NOT NULL,
    dispatch_uuid   text NOT NULL,
    created_at_ms   bigint NOT NULL,
    PRIMARY KEY (application_id, idempotency_key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at_ms);
