-- When a webhook's delivery last failed (an attempt not answered 2xx, or given up as dead),
-- for `opendispatch tail`, which follows failures as they happen. Its partial index holds only
-- webhooks that failed at least once, so a webhook delivered at the first try costs it
-- nothing, and a tail's "failed since" is a walk of the newest entries. Recording an attempt
-- (migration 0005's function, otherwise unchanged) sets it.
ALTER TABLE webhooks ADD COLUMN failed_at_ms bigint;
CREATE INDEX webhooks_failed ON webhooks (failed_at_ms) WHERE failed_at_ms IS NOT NULL;

CREATE OR REPLACE FUNCTION record_webhook_attempts(
    ids bigint[], states text[], next_attempts bigint[], status_codes integer[],
    errors text[], delivered bigint[], ats bigint[]
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM webhooks
    WHERE dispatch_uuid IN (SELECT r.dispatch_uuid FROM webhooks r WHERE r.id = ANY (ids))
      AND state IN ('pending', 'held')
    ORDER BY id
    FOR UPDATE;
    UPDATE webhooks w
    SET state = a.state,
        next_attempt_at_ms = coalesce(a.next_attempt_at_ms, w.next_attempt_at_ms),
        lease_until_ms = NULL, lease_owner = NULL, last_status_code = a.status_code,
        last_error = a.error, delivered_at_ms = a.delivered_at_ms,
        settled_at_ms = CASE WHEN a.state IN ('delivered', 'dead') THEN a.at_ms END,
        failed_at_ms = CASE WHEN a.state <> 'delivered' THEN a.at_ms ELSE w.failed_at_ms END
    FROM unnest(ids, states, next_attempts, status_codes, errors, delivered, ats)
         AS a (id, state, next_attempt_at_ms, status_code, error, delivered_at_ms, at_ms)
    WHERE w.id = a.id;
    UPDATE webhooks h SET state = 'pending'
    WHERE h.dispatch_uuid IN (SELECT s.dispatch_uuid FROM webhooks s
                              WHERE s.id = ANY (ids) AND s.state IN ('delivered', 'dead'))
      AND h.state = 'held'
      AND NOT EXISTS (SELECT 1 FROM webhooks p
                      WHERE p.dispatch_uuid = h.dispatch_uuid AND p.state = 'pending');
END
$$;
