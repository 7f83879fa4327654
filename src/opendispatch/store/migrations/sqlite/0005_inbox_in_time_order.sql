-- The inbox lands every provider status (callbacks, the sandbox's simulated ones) and each
-- is applied in the order it happened: `occurred_at_ms`, which is the provider's time, not
-- when the status arrived or became due. A workflow's event first applies the statuses of its
-- messages waiting here, so it finds them by message.
ALTER TABLE inbox ADD COLUMN occurred_at_ms INTEGER;
UPDATE inbox SET occurred_at_ms = due_at_ms;
CREATE INDEX inbox_by_message ON inbox (message_uuid);

-- A status webhook recorded as settled (delivered or dead) may be the last one its
-- workflow's final report waited for: release it in the same statement. (One process writes
-- an SQLite file, so nothing can come between; PostgreSQL needs more, see its 0005.)
CREATE TRIGGER webhooks_release_final_report
AFTER UPDATE OF state ON webhooks
WHEN NEW.kind = 'message_status' AND NEW.state IN ('delivered', 'dead')
     AND OLD.state <> NEW.state
BEGIN
    UPDATE webhooks SET state = 'pending'
    WHERE dispatch_uuid = NEW.dispatch_uuid AND state = 'held'
      AND NOT EXISTS (SELECT 1 FROM webhooks p
                      WHERE p.dispatch_uuid = NEW.dispatch_uuid AND p.state = 'pending');
END;
