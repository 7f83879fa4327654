-- The jti of every JWT accepted, until the token expires: a token is good for one request
-- (`serve --jwt-replay refuse`). Rows whose token has expired are deleted by retention.
CREATE TABLE seen_tokens (
    application_id TEXT NOT NULL,
    jti            TEXT NOT NULL,
    expires_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (application_id, jti)
) WITHOUT ROWID;
CREATE INDEX seen_tokens_by_expiry ON seen_tokens (expires_at_ms);
