-- Inbox ids are never reused. A status is consumed by id (`delete_inbox`), and the inbox
-- worker may consume one id twice: applying a workflow consumes every status of it that has
-- arrived, then the apply of another of those statuses, claimed in the same batch, deletes
-- its own id again. Without AUTOINCREMENT SQLite gives a new row the largest id + 1, so a
-- status landed in between could take a consumed id and be deleted unapplied (the chaos
-- benchmark lost 1-2 % of statuses under load). PostgreSQL's ids come from a sequence.
CREATE TABLE inbox_never_reused (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    message_uuid        TEXT NOT NULL,
    status              TEXT NOT NULL,
    error_code          INTEGER,
    error_reason        TEXT,
    price               TEXT,
    due_at_ms           INTEGER NOT NULL,
    lease_until_ms      INTEGER,
    occurred_at_ms      INTEGER,
    provider_message_id TEXT
);
INSERT INTO inbox_never_reused
    (id, message_uuid, status, error_code, error_reason, price, due_at_ms, lease_until_ms,
     occurred_at_ms, provider_message_id)
SELECT id, message_uuid, status, error_code, error_reason, price, due_at_ms, lease_until_ms,
       occurred_at_ms, provider_message_id
FROM inbox;
DROP TABLE inbox;
ALTER TABLE inbox_never_reused RENAME TO inbox;
CREATE INDEX inbox_due ON inbox (due_at_ms) WHERE lease_until_ms IS NULL;
CREATE INDEX inbox_leased ON inbox (lease_until_ms) WHERE lease_until_ms IS NOT NULL;
CREATE INDEX inbox_by_message ON inbox (message_uuid);
CREATE UNIQUE INDEX inbox_once ON inbox (provider_message_id, status)
    WHERE provider_message_id IS NOT NULL;
