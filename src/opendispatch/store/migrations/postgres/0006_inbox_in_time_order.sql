-- The inbox lands every provider status (callbacks, the sandbox's simulated ones) and each
-- is applied in the order it happened: `occurred_at_ms`, which is the provider's time, not
-- when the status arrived or became due. A workflow's event first applies the statuses of its
-- messages waiting here, so it finds them by message.
ALTER TABLE inbox ADD COLUMN occurred_at_ms bigint;
UPDATE inbox SET occurred_at_ms = due_at_ms;
CREATE INDEX inbox_by_message ON inbox (message_uuid);
