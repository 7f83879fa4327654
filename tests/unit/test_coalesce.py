"""The coalescer: concurrent calls share flushes, in order, with at most `in_flight` at once."""

from __future__ import annotations

import asyncio

import pytest

from opendispatch.store.coalesce import AGAIN, Again, Coalescer

pytestmark = pytest.mark.anyio


class Recorder:
    """A flush that records its batches and doubles each item; `gate` holds it open."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.running = 0
        self.most_running = 0

    async def flush(self, items: list[int]) -> list[int | BaseException | Again]:
        self.batches.append(list(items))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        await self.gate.wait()
        self.running -= 1
        return [item * 2 for item in items]


async def test_calls_made_together_share_one_flush_and_get_their_own_results():
    recorder = Recorder()
    coalescer: Coalescer[int, int] = Coalescer(recorder.flush)
    results = await asyncio.gather(*(coalescer.submit(n) for n in range(50)))
    assert results == [n * 2 for n in range(50)]
    assert recorder.batches == [list(range(50))]


async def test_calls_made_while_a_flush_runs_go_together_into_the_next():
    recorder = Recorder()
    coalescer: Coalescer[int, int] = Coalescer(recorder.flush, in_flight=1)
    recorder.gate.clear()
    first = asyncio.ensure_future(coalescer.submit(0))
    await asyncio.sleep(0.01)  # the first flush is running, held at the gate
    later = [asyncio.ensure_future(coalescer.submit(n)) for n in range(1, 20)]
    await asyncio.sleep(0.01)
    assert recorder.batches == [[0]]  # nothing else started: one flush at a time
    recorder.gate.set()
    assert [await first, *[await call for call in later]] == [n * 2 for n in range(20)]
    assert recorder.batches == [[0], list(range(1, 20))]


async def test_no_more_than_in_flight_flushes_run_at_once_and_batches_are_capped():
    recorder = Recorder()
    coalescer: Coalescer[int, int] = Coalescer(recorder.flush, in_flight=2, max_batch=10)
    recorder.gate.clear()
    calls = [asyncio.ensure_future(coalescer.submit(n)) for n in range(45)]
    await asyncio.sleep(0.01)
    assert recorder.running == 2
    recorder.gate.set()
    assert await asyncio.gather(*calls) == [n * 2 for n in range(45)]
    assert recorder.most_running == 2
    assert [len(batch) for batch in recorder.batches] == [10, 10, 10, 10, 5]
    assert [n for batch in recorder.batches for n in batch] == list(range(45))  # oldest first


async def test_an_item_flushed_again_goes_ahead_of_newer_calls():
    seen: list[list[str]] = []
    again_once = {"b"}

    async def flush(items: list[str]) -> list[str | BaseException | Again]:
        seen.append(list(items))
        results: list[str | BaseException | Again] = []
        for item in items:
            if item in again_once:
                again_once.discard(item)
                results.append(AGAIN)
            else:
                results.append(item.upper())
        return results

    coalescer: Coalescer[str, str] = Coalescer(flush)
    first = [asyncio.ensure_future(coalescer.submit(item)) for item in "abc"]
    await asyncio.sleep(0)
    newer = asyncio.ensure_future(coalescer.submit("d"))
    assert await asyncio.gather(*first, newer) == ["A", "B", "C", "D"]
    assert seen == [["a", "b", "c"], ["b", "d"]]


async def test_an_item_failing_fails_only_its_call_and_a_failing_flush_fails_all():
    async def flush(items: list[int]) -> list[int | BaseException | Again]:
        if 99 in items:
            raise OSError("connection lost")
        return [ValueError(f"bad {item}") if item < 0 else item for item in items]

    coalescer: Coalescer[int, int] = Coalescer(flush)
    outcomes = await asyncio.gather(
        *(coalescer.submit(n) for n in (1, -2, 3)), return_exceptions=True
    )
    assert outcomes[0] == 1
    assert outcomes[2] == 3
    assert isinstance(outcomes[1], ValueError)

    outcomes = await asyncio.gather(*(coalescer.submit(n) for n in (1, 99)), return_exceptions=True)
    assert all(isinstance(outcome, OSError) for outcome in outcomes)
    assert await coalescer.submit(5) == 5  # and the next batch goes on as usual


async def test_wait_idle_returns_once_every_queued_call_is_flushed():
    recorder = Recorder()
    coalescer: Coalescer[int, int] = Coalescer(recorder.flush, max_batch=3)
    recorder.gate.clear()
    calls = [asyncio.ensure_future(coalescer.submit(n)) for n in range(7)]
    await asyncio.sleep(0)
    waiting = asyncio.ensure_future(coalescer.wait_idle())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    recorder.gate.set()
    await asyncio.wait_for(waiting, timeout=5)
    assert all(call.done() for call in calls)


@pytest.mark.parametrize("in_flight", [1, 3])
async def test_a_cancelled_caller_does_not_stop_its_batch(in_flight: int):
    recorder = Recorder()
    coalescer: Coalescer[int, int] = Coalescer(recorder.flush, in_flight=in_flight)
    recorder.gate.clear()
    cancelled = asyncio.ensure_future(coalescer.submit(1))
    kept = asyncio.ensure_future(coalescer.submit(2))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    recorder.gate.set()
    assert await kept == 4
    assert recorder.batches == [[1, 2]]  # the work itself was done
