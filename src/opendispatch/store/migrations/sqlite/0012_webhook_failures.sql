-- When a webhook's delivery last failed (an attempt not answered 2xx, or given up as dead),
-- for `opendispatch tail`, which follows failures as they happen. Its partial index holds only
-- webhooks that failed at least once, so a webhook delivered at the first try costs it
-- nothing, and a tail's "failed since" is a walk of the newest entries.
ALTER TABLE webhooks ADD COLUMN failed_at_ms INTEGER;
CREATE INDEX webhooks_failed ON webhooks (failed_at_ms) WHERE failed_at_ms IS NOT NULL;
