"""Slow start and backoff per webhook endpoint, with driven time."""

from __future__ import annotations

from opendispatch.runtime.endpoint_health import Admission, EndpointHealth, Verdict

KEY = ("app", "https://hooks.example.com/status")
OTHER = ("app", "https://other.example.com/status")


def health(**kwargs: int) -> EndpointHealth:
    defaults = {"initial_limit": 2, "max_limit": 4, "failure_threshold": 3}
    return EndpointHealth(**(defaults | kwargs))


def test_a_new_endpoint_starts_small_and_grows_with_each_delivery() -> None:
    h = health()
    assert [h.admit(KEY, now_ms=0).admission for _ in range(3)] == [
        Admission.SEND,
        Admission.SEND,
        Admission.WAIT,
    ]
    for _ in range(2):
        assert (
            h.finished(KEY, delivered=True, probe=False, now_ms=1, jitter=0.0) is Verdict.UNCHANGED
        )
    assert [h.admit(KEY, now_ms=2).admission for _ in range(5)] == [Admission.SEND] * 4 + [
        Admission.WAIT  # grew by one per delivery, capped at max_limit
    ]


def test_failures_halve_the_limit_and_open_the_breaker_after_the_threshold() -> None:
    h = health(initial_limit=4)
    for _ in range(3):
        assert h.admit(KEY, now_ms=0).admission is Admission.SEND
    verdicts = [
        h.finished(KEY, delivered=False, probe=False, now_ms=5_000, jitter=0.0) for _ in range(3)
    ]
    assert verdicts == [Verdict.UNCHANGED, Verdict.UNCHANGED, Verdict.OPENED]
    # Backing off for half of 1 s (jitter 0): handed back until then, not sent.
    decision = h.admit(KEY, now_ms=5_100)
    assert (decision.admission, decision.retry_at_ms) == (Admission.DEFER, 5_500)
    assert h.admit(OTHER, now_ms=5_100).admission is Admission.SEND  # others are unaffected


def test_stragglers_failing_after_it_opened_do_not_extend_the_backoff() -> None:
    h = health(initial_limit=4, failure_threshold=2)
    for _ in range(4):
        h.admit(KEY, now_ms=0)
    verdicts = [
        h.finished(KEY, delivered=False, probe=False, now_ms=5_000, jitter=0.0) for _ in range(4)
    ]
    assert verdicts == [Verdict.UNCHANGED, Verdict.OPENED, Verdict.UNCHANGED, Verdict.UNCHANGED]
    assert h.admit(KEY, now_ms=5_001).retry_at_ms == 5_500


def test_half_open_sends_one_probe_and_the_others_wait_for_its_answer() -> None:
    h = health(failure_threshold=1, probe_wait_ms=5_000)
    h.admit(KEY, now_ms=0)
    assert h.finished(KEY, delivered=False, probe=False, now_ms=100, jitter=0.0) is Verdict.OPENED
    probe = h.admit(KEY, now_ms=600)
    second = h.admit(KEY, now_ms=600)
    assert (probe.admission, probe.probe) == (Admission.SEND, True)
    assert (second.admission, second.retry_at_ms) == (Admission.DEFER, 5_600)
    assert h.finished(KEY, delivered=True, probe=True, now_ms=700, jitter=0.0) is Verdict.RECOVERED
    assert h.admit(KEY, now_ms=701).admission is Admission.SEND


def test_a_failed_probe_opens_it_again_for_twice_as_long_up_to_the_cap() -> None:
    h = health(failure_threshold=1, first_backoff_ms=1_000, max_backoff_ms=4_000)
    h.admit(KEY, now_ms=0)
    now = 0
    backoffs = []
    verdict = h.finished(KEY, delivered=False, probe=False, now_ms=now, jitter=0.999)
    for _ in range(5):
        assert verdict is Verdict.OPENED
        deferred = h.admit(KEY, now_ms=now)
        backoffs.append(deferred.retry_at_ms - now)
        now = deferred.retry_at_ms
        assert h.admit(KEY, now_ms=now).probe  # the probe
        verdict = h.finished(KEY, delivered=False, probe=True, now_ms=now, jitter=0.999)
    assert backoffs == [999, 1_999, 3_998, 3_998, 3_998]


def test_idle_healthy_endpoints_are_forgotten_failing_ones_are_kept() -> None:
    h = health(failure_threshold=1)
    h.admit(KEY, now_ms=0)
    h.finished(KEY, delivered=True, probe=False, now_ms=0, jitter=0.0)
    h.admit(OTHER, now_ms=0)
    h.finished(OTHER, delivered=False, probe=False, now_ms=0, jitter=0.0)
    h.forget_idle(now_ms=59_999)
    assert len(h) == 2
    h.forget_idle(now_ms=60_000)
    assert len(h) == 1
    assert h.admit(OTHER, now_ms=60_000).admission is Admission.SEND  # its probe, remembered


def test_a_straggler_that_succeeds_while_the_probe_is_out_is_not_the_probe() -> None:
    h = health(initial_limit=2, failure_threshold=1)
    h.admit(KEY, now_ms=0)
    h.admit(KEY, now_ms=0)
    assert h.finished(KEY, delivered=False, probe=False, now_ms=10, jitter=0.0) is Verdict.OPENED
    assert h.admit(KEY, now_ms=600).probe
    # The older delivery ends well: the endpoint stays open until the probe answers.
    assert h.finished(KEY, delivered=True, probe=False, now_ms=700, jitter=0.0) is (
        Verdict.UNCHANGED
    )
    assert h.admit(KEY, now_ms=701).admission is Admission.DEFER
    assert h.finished(KEY, delivered=True, probe=True, now_ms=800, jitter=0.0) is (
        Verdict.RECOVERED
    )


def test_force_sends_past_the_limits_and_probes_an_open_endpoint() -> None:
    h = health(initial_limit=1, failure_threshold=1)
    h.admit(KEY, now_ms=0)
    assert h.admit(KEY, now_ms=0).admission is Admission.WAIT
    assert h.force(KEY, now_ms=0) == h.force(KEY, now_ms=0)  # SEND, not a probe: closed
    assert h.in_flight(KEY) == 3
    for _ in range(3):
        h.finished(KEY, delivered=False, probe=False, now_ms=10, jitter=0.0)
    forced = h.force(KEY, now_ms=20)  # open, no probe out: this one probes
    assert (forced.admission, forced.probe) == (Admission.SEND, True)
    assert not h.force(KEY, now_ms=20).probe


def test_handed_back_webhooks_are_spread_over_one_more_backoff() -> None:
    h = health(failure_threshold=1, first_backoff_ms=1_000)
    h.admit(KEY, now_ms=0)
    h.finished(KEY, delivered=False, probe=False, now_ms=0, jitter=0.0)  # open until 500
    times = [h.admit(KEY, now_ms=100, jitter=j).retry_at_ms for j in (0.0, 0.5, 0.999)]
    assert times == [500, 1_000, 1_499]
