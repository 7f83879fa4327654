"""How hard to push each webhook endpoint: slow start, and backing off one that keeps failing.

An endpoint is one application's one URL. Isolation between tenants needs more than a cap per
application: a receiver that accepts connections and never answers holds each delivery for the
whole timeout (5 s), so an application whose receiver hangs would keep its full share of
delivery slots busy doing nothing, and a few such applications would fill the global pool.
(Measured before this: four hung applications at about 50 workflows/s each held all 256
slots, and a fifth, healthy application got 0 of 60 attempts in 90 s.) So each endpoint:

- starts with a small concurrency limit (`initial_limit`, 8) that grows by one with each
  delivery, up to `max_limit`, and halves with each failure (the TCP way): a receiver nobody
  has heard from yet cannot take more than 8 slots before its first timeout tells;
- after `failure_threshold` consecutive failures, *opens*: for a backoff that doubles each time
  (1 s, 2 s, ... at most `max_backoff_ms`, with jitter) nothing is sent to it; its webhooks are
  handed back to the store (not counted as attempts), due at times spread over one more
  backoff after it ends. Spread, because handing the whole backlog back for one instant made
  it come due at once, again and again while the endpoint stayed down (measured: the healthy
  application's p99 rose from 29 ms to 616 ms beside four hung ones); not sooner, because a
  recovered endpoint wakes them anyway;
- then *half-opens*: exactly one delivery (the probe) goes out; the others wait until its
  answer is known. A delivered probe closes the breaker, and every webhook waiting for that
  endpoint becomes due at once (`Verdict.RECOVERED`); a failed one opens it again, longer.

So an endpoint that stops answering holds at most its current limit (8 for a new one) for one
timeout, then at most one probe per backoff period, and never hammers a receiver with its
whole backlog while it is down. A pure object: the caller passes `now_ms` and the jitter.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Admission", "Decision", "EndpointHealth", "Verdict"]


class Admission(enum.Enum):
    SEND = "send"  # deliver now
    WAIT = "wait"  # at its limit: start when one of its deliveries ends
    DEFER = "defer"  # backing off: hand it back to the store until `retry_at_ms`


class Verdict(enum.Enum):
    UNCHANGED = "unchanged"
    OPENED = "opened"  # started backing off: hand back what waits for it
    RECOVERED = "recovered"  # it answered after backing off: wake its deferred webhooks


@dataclass(slots=True)
class _Endpoint:
    limit: int
    in_flight: int = 0
    failures: int = 0  # consecutive
    openings: int = 0  # consecutive times it opened: the backoff's exponent
    open_until_ms: int | None = None
    backoff_ms: int = 0  # the ceiling of the current backoff
    probing: bool = False
    last_active_ms: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    admission: Admission
    retry_at_ms: int = 0  # for DEFER
    probe: bool = False  # for SEND: its outcome decides whether the endpoint is back


class EndpointHealth:
    def __init__(
        self,
        *,
        initial_limit: int = 8,
        max_limit: int = 64,
        failure_threshold: int = 5,
        first_backoff_ms: int = 1_000,
        max_backoff_ms: int = 300_000,
        probe_wait_ms: int = 5_000,
    ) -> None:
        """`probe_wait_ms`: how long the others wait for a probe's answer (its timeout)."""
        if not 1 <= initial_limit <= max_limit:
            raise ValueError("need 1 <= initial_limit <= max_limit")
        self._initial = initial_limit
        self._max = max_limit
        self._threshold = failure_threshold
        self._first_backoff = first_backoff_ms
        self._max_backoff = max_backoff_ms
        self._probe_wait = probe_wait_ms
        self._endpoints: dict[tuple[str, str], _Endpoint] = {}

    def admit(self, key: tuple[str, str], *, now_ms: int, jitter: float = 0.0) -> Decision:
        """May a delivery to `key` start now? SEND counts it as in flight. A DEFER's time is
        spread by `jitter` (uniform in [0, 1)) over the current backoff."""
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            endpoint = self._endpoints[key] = _Endpoint(limit=self._initial)
        endpoint.last_active_ms = now_ms
        if endpoint.open_until_ms is not None:
            spread = int(jitter * endpoint.backoff_ms)
            if now_ms < endpoint.open_until_ms:
                return Decision(Admission.DEFER, endpoint.open_until_ms + spread)
            if endpoint.probing:
                return Decision(Admission.DEFER, now_ms + self._probe_wait + spread)
            return self.force(key, now_ms=now_ms)  # half-open: this one is the probe
        if endpoint.in_flight >= endpoint.limit:
            return Decision(Admission.WAIT)
        endpoint.in_flight += 1
        return Decision(Admission.SEND)

    def force(self, key: tuple[str, str], *, now_ms: int) -> Decision:
        """Send one whatever the limits (a webhook that must get its one attempt); while the
        endpoint backs off with no probe out, it becomes the probe."""
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            endpoint = self._endpoints[key] = _Endpoint(limit=self._initial)
        endpoint.last_active_ms = now_ms
        endpoint.in_flight += 1
        probe = endpoint.open_until_ms is not None and not endpoint.probing
        endpoint.probing = endpoint.probing or probe
        return Decision(Admission.SEND, probe=probe)

    def finished(
        self,
        key: tuple[str, str],
        *,
        delivered: bool,
        probe: bool,
        now_ms: int,
        jitter: float,
    ) -> Verdict:
        """Record a delivery's end: `probe` as its admission said; `jitter` uniform in
        [0, 1) spreads the backoff."""
        endpoint = self._endpoints[key]
        endpoint.last_active_ms = now_ms
        endpoint.in_flight -= 1
        if probe:
            endpoint.probing = False
        if delivered:
            endpoint.failures = 0
            endpoint.limit = min(self._max, endpoint.limit + 1)
            if endpoint.open_until_ms is not None and probe:
                endpoint.open_until_ms = None
                endpoint.openings = 0
                return Verdict.RECOVERED
            return Verdict.UNCHANGED
        endpoint.failures += 1
        endpoint.limit = max(1, endpoint.limit // 2)
        if endpoint.failures < self._threshold and not probe:
            return Verdict.UNCHANGED
        if endpoint.open_until_ms is not None and not probe and now_ms < endpoint.open_until_ms:
            return Verdict.UNCHANGED  # a straggler from before it opened
        endpoint.openings += 1
        ceiling = min(self._first_backoff << min(endpoint.openings - 1, 20), self._max_backoff)
        endpoint.backoff_ms = ceiling
        endpoint.open_until_ms = now_ms + ceiling // 2 + int(jitter * (ceiling - ceiling // 2))
        return Verdict.OPENED

    def healthy(self, key: tuple[str, str]) -> bool:
        """Not failing and not backing off: deliveries to it go at once."""
        endpoint = self._endpoints.get(key)
        return endpoint is None or (not endpoint.failures and endpoint.open_until_ms is None)

    def in_flight(self, key: tuple[str, str]) -> int:
        endpoint = self._endpoints.get(key)
        return 0 if endpoint is None else endpoint.in_flight

    def forget_idle(self, *, now_ms: int, idle_ms: int = 60_000) -> None:
        """Drop healthy endpoints unused for `idle_ms` (memory stays bounded by the endpoints
        in use); one that is failing or backing off is kept, with its backoff."""
        for key in [
            key
            for key, endpoint in self._endpoints.items()
            if endpoint.in_flight == 0
            and endpoint.open_until_ms is None
            and not endpoint.failures
            and now_ms - endpoint.last_active_ms >= idle_ms
        ]:
            del self._endpoints[key]

    def __len__(self) -> int:
        return len(self._endpoints)
