"""A cancel racing a failover has exactly one outcome and one final report, on each database.

The interleavings are forced, not hoped for:

- *One moment*: the cancel and the competing event (the step's deadline firing, or the
  provider's rejection) are both handed to the store before either is written, in each order.
  The store applies the events of one workflow one after the other: whichever it takes first
  decides, the other is decided again on what the first left.
- *Inside the window*: the competing event is written while the cancel is being decided, on
  the state the cancel read (and the other way round). On PostgreSQL a second process (its
  own store and pool, on an event loop in a thread) writes it there and then, so the cancel's
  version-checked write loses and the cancel is decided again on the new state. On SQLite
  the one writer decides and writes in one transaction: there is no window, and the competing
  event, submitted from inside the decision, can only be applied after it.

Workers are not started: nothing is sent, and what the store holds is exactly what the two
events wrote.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from opendispatch.auth.provisioning import provision_application
from opendispatch.config import Settings
from opendispatch.engine.model import MessageStatus, StatusReported, TimerFired
from opendispatch.ids import uuid7
from opendispatch.runtime.assembly import build_runtime
from opendispatch.runtime.clock import ManualClock
from opendispatch.runtime.service import Runtime
from opendispatch.runtime.shell import CancelOutcome, Shell, decode_state
from opendispatch.store.database import DatabaseStore
from opendispatch.store.factory import create_store
from opendispatch.store.protocol import TransitionFunction
from opendispatch.store.records import LoadedWorkflow, NewWorkflow, Transition
from tests.databases import TestDatabase, new_database

pytestmark = pytest.mark.anyio

T = TypeVar("T")
EXPIRY_S = 60


def workflow(*, last_step_only: bool = False) -> str:
    """WhatsApp (read within 60 s) then SMS, both to silent sandbox numbers; or the SMS alone
    with a `failover` of its own, so that its deadline ends the workflow."""

    def step(channel: str, condition: str | None) -> dict[str, Any]:
        message: dict[str, Any] = {
            "to": {"type": channel, "number": "447700900004"},
            "from": {"type": channel, "number": "447700900000"},
            "message": {"content": {"type": "text", "text": "hi"}},
        }
        if condition is not None:
            message["failover"] = {"expiry_time": EXPIRY_S, "condition_status": condition}
        return message

    steps = (
        [step("sms", "delivered")]
        if last_step_only
        else [step("whatsapp", "read"), step("sms", None)]
    )
    return json.dumps({"template": "failover", "workflow": steps})


@dataclass
class Race:
    runtime: Runtime
    clock: ManualClock
    database: TestDatabase
    application_id: str
    dispatch_uuid: str
    first_message: str

    async def outcome(self) -> tuple[str, list[str], list[tuple[int, str]]]:
        """The workflow's status, its final reports' statuses, and (step, send state) of
        every send row written."""
        uuid = self.dispatch_uuid
        status = await self.database.scalar(
            f"SELECT status FROM workflows WHERE dispatch_uuid = '{uuid}'"
        )
        finals = await self.database.rows(
            f"SELECT status FROM webhooks WHERE dispatch_uuid = '{uuid}' AND kind = 'final_report'"
        )
        sends = await self.database.rows(
            f"SELECT step, send_state FROM messages WHERE dispatch_uuid = '{uuid}' ORDER BY step"
        )
        return status, [row[0] for row in finals], [(row[0], row[1]) for row in sends]

    async def messages(self) -> list[tuple[int, str | None]]:
        loaded = await self.runtime.store.load_workflow(self.dispatch_uuid)
        assert loaded is not None
        assert loaded.state_json is not None
        state = decode_state(loaded.state_json)
        return [
            (message.step, message.status.value if message.status else None)
            for message in state.messages
        ]


@pytest.fixture
async def runtime(database: TestDatabase) -> AsyncIterator[tuple[Runtime, ManualClock]]:
    clock = ManualClock(start_ms=int(time.time() * 1000))
    store = create_store(database.url)
    await store.open()
    runtime = build_runtime(
        Settings(database=database.url, allow_private_webhooks=True), store=store, clock=clock
    )
    yield runtime, clock
    await runtime.close()
    await store.close()


async def start_race(
    runtime: Runtime, clock: ManualClock, database: TestDatabase, *, last_step_only: bool = False
) -> Race:
    app = await provision_application(runtime.store, name="race", status_url="http://x.test/s")
    credentials = await runtime.store.find_credentials(app.application.application_id)
    assert credentials is not None
    dispatch_uuid = uuid7()
    await runtime.accept(
        NewWorkflow(
            dispatch_uuid=dispatch_uuid,
            application_id=app.application.application_id,
            template="failover",
            request_json=workflow(last_step_only=last_step_only),
            created_at_ms=clock.now_ms(),
            channels=("sms",) if last_step_only else ("whatsapp", "sms"),
        ),
        credentials,
    )
    loaded = await runtime.store.load_workflow(dispatch_uuid)
    assert loaded is not None
    assert loaded.state_json is not None
    first_message = decode_state(loaded.state_json).message_uuids[0]
    await runtime.report_status(first_message, MessageStatus.SUBMITTED)
    return Race(
        runtime, clock, database, app.application.application_id, dispatch_uuid, first_message
    )


def fire_timer(race: Race, shell: Shell) -> Callable[[DatabaseStore], Coroutine[Any, Any, Any]]:
    fire = shell.transition_for(TimerFired(), now_ms=race.clock.now_ms())
    return lambda store: store.apply(dispatch_uuid=race.dispatch_uuid, transition=fire)


def reject_first(race: Race, shell: Shell) -> Callable[[DatabaseStore], Coroutine[Any, Any, Any]]:
    now = race.clock.now_ms()
    event = StatusReported(
        message_uuid=race.first_message, status=MessageStatus.REJECTED, at_ms=now
    )
    reject = shell.transition_for(event, now_ms=now)
    return lambda store: store.apply(message_uuid=race.first_message, transition=reject)


COMPETITORS = {"deadline": fire_timer, "rejection": reject_first}


# -- one moment: both handed to the store before either is written ------------------------------


@pytest.mark.parametrize("first", ["competitor", "cancel"])
@pytest.mark.parametrize("competitor", sorted(COMPETITORS))
async def test_cancel_and_a_failover_at_one_moment_have_one_outcome(
    runtime: tuple[Runtime, ManualClock], database: TestDatabase, competitor: str, first: str
):
    race = await start_race(*runtime, database)
    if competitor == "deadline":
        await race.clock.advance(EXPIRY_S * 1000)
    failover = COMPETITORS[competitor](race, race.runtime.shell)(race.runtime.store)
    cancel = race.runtime.cancel(race.application_id, race.dispatch_uuid)

    if first == "cancel":
        outcome, _ = await asyncio.gather(cancel, failover)
    else:
        _, outcome = await asyncio.gather(failover, cancel)

    assert outcome is CancelOutcome.CANCELLED
    status, finals, sends = await race.outcome()
    assert (status, finals) == ("cancelled", ["cancelled"])
    assert (1, "pending") not in sends  # the SMS can never go out
    messages = await race.messages()
    if competitor == "deadline":
        # The deadline came first in either order (the cancel is applied at it): the SMS
        # was asked and cancelled; written as cancelled, or never written at all.
        assert messages == [(0, "submitted"), (1, "rejected")]
        written = [(0, "pending"), (1, "cancelled")] if first == "competitor" else [(0, "pending")]
        assert sends == written
    elif first == "cancel":
        # Cancelled on the WhatsApp; its rejection came late: forwarded, changed nothing.
        assert messages == [(0, "rejected")]
        assert sends == [(0, "pending")]
    else:
        # The rejection failed over to the SMS, whose send the cancel cancelled.
        assert messages == [(0, "rejected"), (1, "rejected")]
        assert sends == [(0, "pending"), (1, "cancelled")]


@pytest.mark.parametrize("first", ["deadline", "cancel"])
async def test_cancel_at_the_last_deadline_finds_the_workflow_ended_in_error_either_way(
    runtime: tuple[Runtime, ManualClock], database: TestDatabase, first: str
):
    race = await start_race(*runtime, database, last_step_only=True)
    await race.clock.advance(EXPIRY_S * 1000)
    deadline = fire_timer(race, race.runtime.shell)(race.runtime.store)
    cancel = race.runtime.cancel(race.application_id, race.dispatch_uuid)

    if first == "cancel":
        outcome, _ = await asyncio.gather(cancel, deadline)
    else:
        _, outcome = await asyncio.gather(deadline, cancel)

    assert outcome is CancelOutcome.ENDED  # the API's 409
    status, finals, _ = await race.outcome()
    assert (status, finals) == ("error", ["error"])


# -- inside the window: written while the other is being decided --------------------------------


class OtherProcess:
    """A second server process on the same database: its own store (and connection pool),
    on its own event loop in a thread, so it can write while this one's loop is held."""

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.store = create_store(url)
        self.run(self.store.open())
        self.shell = Shell(final_status_timeout_s=86_400)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    def close(self) -> None:
        self.run(self.store.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


class WrittenFirst:
    """A transition function, except that the first time it decides, `meanwhile` runs to
    completion first: the state it then decides on is the one read before `meanwhile` wrote.
    `decisions` counts how often the store had it decide."""

    def __init__(self, transition: TransitionFunction, meanwhile: Callable[[], None]) -> None:
        self._transition = transition
        self._meanwhile = meanwhile
        self.decisions = 0

    def __call__(self, loaded: LoadedWorkflow) -> Transition | None:
        self.decisions += 1
        if self.decisions == 1:
            self._meanwhile()
        return self._transition(loaded)


@pytest.fixture
async def postgres(tmp_path: Path) -> AsyncIterator[TestDatabase]:
    async for database in new_database("postgres", tmp_path):
        yield database


@pytest.mark.parametrize("competitor", sorted(COMPETITORS))
async def test_on_postgres_a_failover_written_while_the_cancel_decides_makes_it_decide_again(
    postgres: TestDatabase, competitor: str
):
    clock = ManualClock(start_ms=int(time.time() * 1000))
    store = create_store(postgres.url)
    await store.open()
    runtime = build_runtime(Settings(database=postgres.url), store=store, clock=clock)
    other = OtherProcess(postgres.url)
    try:
        race = await start_race(runtime, clock, postgres)
        if competitor == "deadline":
            await clock.advance(EXPIRY_S * 1000 + 1)
        failover = COMPETITORS[competitor](race, other.shell)
        cancellation = runtime.shell.cancel(race.application_id, now_ms=clock.now_ms())

        racing = WrittenFirst(cancellation.transition, lambda: other.run(failover(other.store)))
        await store.apply(dispatch_uuid=race.dispatch_uuid, transition=racing)

        # The cancel lost the version check and was decided again, on the failed-over state.
        assert racing.decisions == 2
        assert cancellation.outcome is CancelOutcome.CANCELLED
        status, finals, sends = await race.outcome()
        assert (status, finals) == ("cancelled", ["cancelled"])
        assert sends == [(0, "pending"), (1, "cancelled")]
        first = "submitted" if competitor == "deadline" else "rejected"
        assert await race.messages() == [(0, first), (1, "rejected")]
    finally:
        other.close()
        await runtime.close()
        await store.close()


@pytest.mark.parametrize("competitor", sorted(COMPETITORS))
async def test_on_postgres_a_cancel_written_while_a_failover_decides_leaves_it_nothing_to_do(
    postgres: TestDatabase, competitor: str
):
    clock = ManualClock(start_ms=int(time.time() * 1000))
    store = create_store(postgres.url)
    await store.open()
    runtime = build_runtime(Settings(database=postgres.url), store=store, clock=clock)
    other = OtherProcess(postgres.url)
    try:
        race = await start_race(runtime, clock, postgres)
        if competitor == "deadline":
            await clock.advance(EXPIRY_S * 1000 - 1)  # the cancel happened just before it
        cancellation = other.shell.cancel(race.application_id, now_ms=clock.now_ms())
        if competitor == "deadline":
            await clock.advance(1)
        shell = runtime.shell
        transition: TransitionFunction
        if competitor == "deadline":
            transition = shell.transition_for(TimerFired(), now_ms=clock.now_ms())
        else:
            transition = shell.transition_for(
                StatusReported(
                    message_uuid=race.first_message,
                    status=MessageStatus.REJECTED,
                    at_ms=clock.now_ms(),
                ),
                now_ms=clock.now_ms(),
            )

        def cancel_meanwhile() -> None:
            other.run(
                other.store.apply(
                    dispatch_uuid=race.dispatch_uuid, transition=cancellation.transition
                )
            )

        racing = WrittenFirst(transition, cancel_meanwhile)
        await store.apply(dispatch_uuid=race.dispatch_uuid, transition=racing)

        assert racing.decisions == 2  # lost the version check, decided again
        assert cancellation.outcome is CancelOutcome.CANCELLED
        status, finals, sends = await race.outcome()
        assert (status, finals) == ("cancelled", ["cancelled"])
        assert sends == [(0, "pending")]  # the failover, decided again, found it cancelled
        first = "submitted" if competitor == "deadline" else "rejected"  # a late rejection
        assert await race.messages() == [(0, first)]
    finally:
        other.close()
        await runtime.close()
        await store.close()


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[TestDatabase]:
    async for database in new_database("sqlite", tmp_path):
        yield database


@pytest.mark.parametrize("competitor", sorted(COMPETITORS))
async def test_on_sqlite_a_failover_submitted_while_the_cancel_decides_comes_after_it(
    sqlite: TestDatabase, competitor: str
):
    clock = ManualClock(start_ms=int(time.time() * 1000))
    store = create_store(sqlite.url)
    await store.open()
    runtime = build_runtime(Settings(database=sqlite.url), store=store, clock=clock)
    try:
        race = await start_race(runtime, clock, sqlite)
        if competitor == "deadline":
            await clock.advance(EXPIRY_S * 1000 - 1)  # the cancel happened just before it
        cancellation = runtime.shell.cancel(race.application_id, now_ms=clock.now_ms())
        if competitor == "deadline":
            await clock.advance(1)
        failover = COMPETITORS[competitor](race, runtime.shell)
        submitted: list[asyncio.Future[Any]] = []

        racing = WrittenFirst(
            cancellation.transition,
            lambda: submitted.append(asyncio.ensure_future(failover(store))),
        )
        await store.apply(dispatch_uuid=race.dispatch_uuid, transition=racing)
        await asyncio.gather(*submitted)

        assert racing.decisions == 1  # decided and written in one transaction: no window
        assert len(submitted) == 1
        assert cancellation.outcome is CancelOutcome.CANCELLED
        status, finals, sends = await race.outcome()
        assert (status, finals) == ("cancelled", ["cancelled"])
        assert sends == [(0, "pending")]  # no SMS: the failover found the workflow cancelled
    finally:
        await runtime.close()
        await store.close()
