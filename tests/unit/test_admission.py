"""Admission control: when to refuse new workflows, and when to accept them again."""

from __future__ import annotations

from opendispatch.runtime.admission import AdmissionControl


def control() -> AdmissionControl:
    return AdmissionControl(
        max_queue_delay_s=0.25, max_webhook_delay_s=1.0, max_loop_lag_s=0.1, smoothing=0.5
    )


def test_it_admits_while_every_signal_is_under_its_limit() -> None:
    admission = control()
    for _ in range(20):
        admission.observe_queue_delay(0.2)
        admission.observe_webhook_delay(0.9)
        admission.observe_loop_lag(0.09)
    assert admission.admit()
    assert admission.refused == 0


def test_sends_waiting_too_long_make_it_refuse_until_they_wait_half_as_long() -> None:
    admission = control()
    for _ in range(10):
        admission.observe_queue_delay(0.5)
    assert not admission.admit()
    for _ in range(3):
        admission.observe_queue_delay(0.15)  # under the limit, above half of it
    assert not admission.admit()  # hysteresis: no flapping at the edge
    for _ in range(10):
        admission.observe_queue_delay(0.0)
    assert admission.admit()
    assert admission.refused == 2


def test_one_late_claim_is_smoothed_away() -> None:
    admission = AdmissionControl(max_queue_delay_s=0.25, smoothing=0.05)
    admission.observe_queue_delay(2.0)  # a burst: the average moves by 5 % of it
    assert admission.admit()


def test_any_signal_over_its_limit_refuses_and_a_limit_of_zero_is_off() -> None:
    lagging = control()
    for _ in range(10):
        lagging.observe_loop_lag(0.5)
    assert not lagging.admit()
    webhooks = control()
    for _ in range(10):
        webhooks.observe_webhook_delay(3.0)
    assert not webhooks.admit()
    off = AdmissionControl(max_queue_delay_s=0, max_webhook_delay_s=0, max_loop_lag_s=0)
    for _ in range(10):
        off.observe_queue_delay(60.0)
        off.observe_loop_lag(60.0)
    assert off.admit()
