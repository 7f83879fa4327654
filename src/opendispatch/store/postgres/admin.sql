-- PostgreSQL queries of the connector itself: migrations and wake-ups (store/postgres/).

-- Held until COMMIT: processes starting together migrate one after the other, and each
-- finds the work done by the one before it.
-- name: migration_lock
SELECT pg_advisory_xact_lock($1);

-- name: create_schema_migrations
CREATE TABLE IF NOT EXISTS schema_migrations (
    version       integer PRIMARY KEY,
    name          text NOT NULL,
    applied_at_ms bigint NOT NULL
);

-- name: applied_migrations
SELECT version FROM schema_migrations ORDER BY version;

-- name: record_migration
INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES ($1, $2, $3);

-- name: notify
SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload;
