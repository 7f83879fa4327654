"""Admission control: how large a share of new workflows to refuse, interval by interval."""

from __future__ import annotations

import random

from opendispatch.runtime.admission import AdmissionControl


def control(**targets: float) -> AdmissionControl:
    return AdmissionControl(
        **{"max_queue_delay_s": 0.1, "max_webhook_delay_s": 1.0, "max_loop_lag_s": 0.1, **targets},
        chance=random.Random(7),
    )


def refusals(admission: AdmissionControl, tries: int = 1000) -> int:
    return sum(not admission.admit() for _ in range(tries))


def test_it_admits_everything_while_every_delay_is_under_its_target() -> None:
    admission = control()
    for _ in range(200):
        admission.observe_queue_delay(0.09)
        admission.observe_inbox_delay(0.09)
        admission.observe_webhook_delay(0.9)
        admission.observe_loop_lag(0.09)
        admission.update()
    assert refusals(admission) == 0
    assert admission.refused == 0


def test_sends_waiting_past_their_target_refuse_a_growing_share_that_falls_once_they_catch_up() -> (
    None
):
    admission = control()
    shares = []
    for _ in range(20):
        admission.observe_queue_delay(0.2)  # twice the target
        admission.update()
        shares.append(admission.refused_share)
    assert shares == sorted(shares)
    assert 0 < shares[-1] < 1
    assert 0 < refusals(admission) < 1000  # a share, not everything
    for _ in range(100):
        admission.observe_queue_delay(0.01)
        admission.update()
    assert admission.refused_share == 0
    assert refusals(admission) == 0


def test_provider_statuses_waiting_in_the_inbox_count_like_sends() -> None:
    admission = control()
    for _ in range(20):
        admission.observe_inbox_delay(0.3)
        admission.update()
    assert refusals(admission) > 0


def test_one_late_claim_or_one_pause_of_the_loop_refuses_nothing() -> None:
    admission = control()
    admission.observe_queue_delay(30.0)  # a claim of sends that were due long ago
    for _ in range(20):
        admission.update()
        assert refusals(admission) == 0
    lagging = control()
    lagging.observe_loop_lag(0.25)
    for _ in range(20):
        lagging.update()
        lagging.observe_loop_lag(0.001)
        assert refusals(lagging) == 0


def test_a_queue_nobody_takes_from_counts_as_empty_after_a_few_intervals() -> None:
    admission = control()
    for _ in range(30):
        admission.observe_queue_delay(0.4)
        admission.update()
    assert admission.refused_share > 0
    for _ in range(200):
        admission.update()  # no claims: the sends have all gone
    assert admission.refused_share == 0


def test_a_target_of_zero_switches_its_signal_off() -> None:
    off = AdmissionControl(max_queue_delay_s=0, max_webhook_delay_s=0, max_loop_lag_s=0)
    assert not off.enabled
    for _ in range(100):
        off.observe_queue_delay(60.0)
        off.observe_loop_lag(60.0)
        off.update()
    assert refusals(off) == 0
    webhooks_only = control(max_queue_delay_s=0, max_loop_lag_s=0)
    for _ in range(50):
        webhooks_only.observe_queue_delay(60.0)
        webhooks_only.update()
    assert refusals(webhooks_only) == 0


def test_under_steady_overload_the_server_stays_busy_and_its_queue_near_the_target() -> None:
    """A server that completes 20 workflows an interval, offered 30 (1.5x capacity): the
    share refused settles near a third, the queue never empties (work is never lacking) and
    its delay stays near the 100 ms target instead of growing without bound. An on/off
    switch refused everything until the queue drained, then let the whole flood in."""
    admission = control()
    capacity, offered, interval_s = 20, 30, 0.02
    queue = 0.0
    idle_intervals = 0
    delays = []
    admitted = 0
    for interval in range(3000):
        accepted = sum(admission.admit() for _ in range(offered))
        queue += accepted
        served = min(queue, capacity)
        queue -= served
        delay_s = queue / capacity * interval_s
        admission.observe_queue_delay(delay_s)
        admission.update()
        if interval >= 500:  # settled
            admitted += accepted
            delays.append(delay_s)
            idle_intervals += served < capacity
    assert idle_intervals == 0
    assert max(delays) < 0.3
    assert 0.05 < sum(delays) / len(delays) < 0.15
    assert abs(admitted / 2500 - capacity) < 0.5  # accepted at capacity, on average
