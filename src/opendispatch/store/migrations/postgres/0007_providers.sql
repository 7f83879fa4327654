-- Real providers. Accounts live in the database so that every server process sees the same
-- ones (`providers add` on one machine reaches all). Their secrets are never stored in clear:
-- `secrets` is a Fernet token (OPENDISPATCH_SECRET_KEY) of a JSON object; `settings_json`
-- holds the rest, and the hashes of settings that are only ever compared.
CREATE TABLE provider_accounts (
    name          text PRIMARY KEY,
    kind          text NOT NULL,
    base_url      text NOT NULL,
    settings_json text NOT NULL,
    secrets       text,
    created_at_ms bigint NOT NULL,
    updated_at_ms bigint NOT NULL
);

-- A live application's providers for a channel, in the order they are tried.
CREATE TABLE provider_routes (
    application_id text NOT NULL REFERENCES applications (application_id),
    channel        text NOT NULL,
    position       integer NOT NULL,
    provider       text NOT NULL REFERENCES provider_accounts (name),
    PRIMARY KEY (application_id, channel, position)
);
CREATE INDEX provider_routes_by_provider ON provider_routes (provider);

-- Sandbox applications (false) send everything to the sandbox; live ones (true) through their routes.
ALTER TABLE applications ADD COLUMN live boolean NOT NULL DEFAULT false;

-- A send finds its route by application; `provider` becomes the one that carried it (or was
-- tried last). `unknown`: a send state for a request that went out with no answer back.
-- A callback without our reference (an account-level webhook) finds its message by the
-- provider's id.
CREATE INDEX messages_by_provider_id ON messages (provider_message_id)
    WHERE provider_message_id IS NOT NULL;
ALTER TABLE messages ADD COLUMN application_id text;
UPDATE messages SET application_id =
    (SELECT w.application_id FROM workflows w WHERE w.dispatch_uuid = messages.dispatch_uuid);

-- Providers deliver callbacks at least once: a status lands once per (provider message id,
-- status) while it waits here (the engine drops repeats after that).
ALTER TABLE inbox ADD COLUMN provider_message_id text;
CREATE UNIQUE INDEX inbox_once ON inbox (provider_message_id, status)
    WHERE provider_message_id IS NOT NULL;
