-- Real providers. Accounts live in the database so that every server process sees the same
-- ones (`providers add` on one machine reaches all). Their secrets are never stored in clear:
-- `secrets` is a Fernet token (OPENDISPATCH_SECRET_KEY) of a JSON object; `settings_json`
-- holds the rest, and the hashes of settings that are only ever compared.
CREATE TABLE provider_accounts (
    name          TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    base_url      TEXT NOT NULL,
    settings_json TEXT NOT NULL,
    secrets       TEXT,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);

-- A live application's providers for a channel, in the order they are tried.
CREATE TABLE provider_routes (
    application_id TEXT NOT NULL REFERENCES applications (application_id),
    channel        TEXT NOT NULL,
    position       INTEGER NOT NULL,
    provider       TEXT NOT NULL REFERENCES provider_accounts (name),
    PRIMARY KEY (application_id, channel, position)
);
CREATE INDEX provider_routes_by_provider ON provider_routes (provider);

-- Sandbox applications (0) send everything to the sandbox; live ones (1) through their routes.
ALTER TABLE applications ADD COLUMN live INTEGER NOT NULL DEFAULT 0;

-- A send finds its route by application; `provider` becomes the one that carried it (or was
-- tried last). `unknown`: a send state for a request that went out with no answer back.
-- A callback without our reference (an account-level webhook) finds its message by the
-- provider's id.
CREATE INDEX messages_by_provider_id ON messages (provider_message_id)
    WHERE provider_message_id IS NOT NULL;
ALTER TABLE messages ADD COLUMN application_id TEXT;
UPDATE messages SET application_id =
    (SELECT w.application_id FROM workflows w WHERE w.dispatch_uuid = messages.dispatch_uuid);

-- Providers deliver callbacks at least once: a status lands once per (provider message id,
-- status) while it waits here (the engine drops repeats after that).
ALTER TABLE inbox ADD COLUMN provider_message_id TEXT;
CREATE UNIQUE INDEX inbox_once ON inbox (provider_message_id, status)
    WHERE provider_message_id IS NOT NULL;
