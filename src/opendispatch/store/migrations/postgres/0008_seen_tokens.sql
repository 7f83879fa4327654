-- The jti of every JWT accepted, until the token expires: a token is good for one request
-- (`serve --jwt-replay refuse`), whichever server process it reaches. Rows whose token has
-- expired are deleted by retention.
CREATE TABLE seen_tokens (
    application_id text NOT NULL,
    jti            text NOT NULL,
    expires_at_ms  bigint NOT NULL,
    PRIMARY KEY (application_id, jti)
);
CREATE INDEX seen_tokens_by_expiry ON seen_tokens (expires_at_ms);
