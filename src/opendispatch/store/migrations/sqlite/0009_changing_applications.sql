-- Applications can be changed after they are created (`opendispatch apps update`,
-- `rotate-secret`, `delete`).
--
-- A rotated API secret: the one it replaced stays valid until `previous_secret_expires_at_ms`
-- (the grace period chosen at rotation; none by default), stored hashed like the current one.
ALTER TABLE accounts ADD COLUMN previous_secret_hash TEXT;
ALTER TABLE accounts ADD COLUMN previous_secret_expires_at_ms INTEGER;

-- A deleted application whose data is kept (for audit, until retention expires it): its row
-- stays because its workflows refer to it, its secrets are wiped, and no credential lookup,
-- workflow load or listing finds it any more. `apps delete --purge` removes the row itself.
ALTER TABLE applications ADD COLUMN deleted_at_ms INTEGER;
