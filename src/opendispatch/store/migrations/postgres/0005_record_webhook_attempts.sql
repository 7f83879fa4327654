-- Recording delivery attempts, and releasing the final reports they were the last to wait
-- for, without the races that left a final report held until the periodic sweep.
--
-- A final report is written `held` while its workflow has webhooks to deliver, and released
-- by whoever records the last of them. Two races left it held for good: a transition writing
-- the held report while another process recorded the webhook it waits for, and two processes
-- each recording one of a workflow's last two webhooks; in both, each side saw the other's
-- webhook still pending, uncommitted. Closed by row locks taken in one order (ascending id)
-- and a fresh snapshot for the release:
--   * the transition share-locks the pending webhooks its final report waits for;
--   * this function first locks every pending or held webhook of the workflows it records,
--     then updates them, then releases, in separate statements (each statement of a function
--     sees what committed before it started).
-- So of two that meet, one waits for the other and then sees its outcome: a transition that
-- waited sees the webhook delivered (and writes its report pending); a recorder that waited
-- sees the held report, or the other webhook delivered, and releases. A function keeps it one
-- round trip.
CREATE FUNCTION record_webhook_attempts(
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
        settled_at_ms = CASE WHEN a.state IN ('delivered', 'dead') THEN a.at_ms END
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
