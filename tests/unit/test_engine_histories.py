"""Golden histories: recorded workflows replayed through the engine, the way Temporal replays.

Each file in `tests/unit/golden/` is one realistic workflow, from its `WorkflowAccepted` to its
last late status: a list of entries `{"now_ms", "event", "effects", "state"}` in the order the
shell applied them, then `final_state`. Replaying feeds every event to `decide` with its
`now_ms` and compares, entry by entry, the effects and a summary of the state with what was
recorded; any change in the engine's behaviour on these workflows shows up as a named
difference, even one a rule-by-rule test did not think to look for.

Events and effects are the engine's own dataclasses, written with `msgspec` under a small
`{"type": "StatusReported", ...}` wrapper (msgspec tags unions of Structs, not of
dataclasses). The state is written as a summary (`summarize`): what the shell and the
webhooks depend on, without the plan the file already holds in its first event.

Regenerating (off by default; pytest never writes these files). After a deliberate change of
behaviour, or to add a history, run from the repository root:

    .venv/bin/python -m tests.unit.test_engine_histories tests/unit/golden/NAME.json [...]

It keeps each file's `description` and its `now_ms`/`event` inputs, replays them through the
current engine, and rewrites `effects`, `state` and `final_state`. A new history can be
written with inputs only (entries holding just `now_ms` and `event`). The regenerated file is
what the engine does now, not what it should do: read its diff against the rules in
failover.py's docstring before committing it, as the recorded files here were read.
"""

from __future__ import annotations

import sys
import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest

from opendispatch.engine import failover
from opendispatch.engine.failover import Move, Place, Signal, decide
from opendispatch.engine.model import Effect, Event, WorkflowState

GOLDEN = Path(__file__).parent / "golden"

# Taken from the unions themselves, so a new kind of event or effect is known here at once.
EVENT_TYPES: dict[str, type[Any]] = {cls.__name__: cls for cls in typing.get_args(Event)}
EFFECT_TYPES: dict[str, type[Any]] = {cls.__name__: cls for cls in typing.get_args(Effect)}


# -- encoding -----------------------------------------------------------------------------------


def encode_tagged(value: Any) -> dict[str, Any]:
    """A dataclass as the JSON object the file holds, its class name under `type`."""
    fields = msgspec.json.decode(msgspec.json.encode(value))  # tuples become lists, as in JSON
    assert isinstance(fields, dict)
    return {"type": type(value).__name__, **fields}


def decode_tagged(data: dict[str, Any], types: dict[str, type[Any]]) -> Any:
    fields = dict(data)
    kind = fields.pop("type")
    if kind not in types:
        raise ValueError(f"unknown type {kind!r}, expected one of {sorted(types)}")
    return msgspec.convert(fields, type=types[kind])


def summarize(state: WorkflowState) -> dict[str, Any]:
    """The parts of a state the outside world depends on, as JSON-ready builtins."""
    return {
        "status": state.status.value,
        "current": state.current,
        "due_at_ms": state.due_at_ms,
        "ended_at_ms": state.ended_at_ms,
        "messages": [
            {
                "message_uuid": message.message_uuid,
                "step": message.step,
                "sent_at_ms": message.sent_at_ms,
                "status": message.status.value if message.status else None,
                "statuses": [record.status.value for record in message.history],
                "price": message.price,
                "error": msgspec.to_builtins(message.error),
            }
            for message in state.messages
        ],
    }


def summarize_briefly(state: WorkflowState) -> dict[str, Any]:
    """What each entry records: enough to see the workflow move, short enough to read."""
    return {"status": state.status.value, "current": state.current, "due_at_ms": state.due_at_ms}


def load(path: Path) -> dict[str, Any]:
    document = msgspec.json.decode(path.read_bytes())
    assert isinstance(document, dict)
    return document


# -- replaying ----------------------------------------------------------------------------------


def replay(document: dict[str, Any]) -> list[str]:
    """Every difference between the recorded history and what the engine does now."""
    differences = []
    state: WorkflowState | None = None
    for index, entry in enumerate(document["history"]):
        event = decode_tagged(entry["event"], EVENT_TYPES)
        state, effects = decide(state, event, entry["now_ms"])
        where = f"entry {index} ({type(event).__name__} at {entry['now_ms']})"
        expected = [decode_tagged(effect, EFFECT_TYPES) for effect in entry["effects"]]
        if list(effects) != expected:
            differences.append(f"{where}: effects {list(effects)!r}, recorded {expected!r}")
        if summarize_briefly(state) != entry["state"]:
            differences.append(
                f"{where}: state {summarize_briefly(state)!r}, recorded {entry['state']!r}"
            )
    if state is None or summarize(state) != document["final_state"]:
        final = summarize(state) if state else None
        differences.append(f"final state {final!r}, recorded {document['final_state']!r}")
    return differences


def regenerate(path: Path) -> None:
    """Rewrite a golden file's expectations from its inputs and the engine as it is now.

    Off by default: only `python -m tests.unit.test_engine_histories FILE...` calls it (see the
    module docstring). Review the diff by hand before committing.
    """
    document = load(path)
    state: WorkflowState | None = None
    history = []
    for entry in document["history"]:
        event = decode_tagged(entry["event"], EVENT_TYPES)
        state, effects = decide(state, event, entry["now_ms"])
        history.append(
            {
                "now_ms": entry["now_ms"],
                "event": encode_tagged(event),
                "effects": [encode_tagged(effect) for effect in effects],
                "state": summarize_briefly(state),
            }
        )
    assert state is not None, "a history starts with a WorkflowAccepted"
    regenerated = {
        "description": document["description"],
        "history": history,
        "final_state": summarize(state),
    }
    path.write_bytes(msgspec.json.format(msgspec.json.encode(regenerated), indent=2) + b"\n")


# -- tests --------------------------------------------------------------------------------------

GOLDEN_FILES = sorted(GOLDEN.glob("*.json"))


def test_there_are_golden_histories_to_replay() -> None:
    assert len(GOLDEN_FILES) >= 5


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda path: path.stem)
def test_golden_history_replays_to_the_recorded_effects_and_states(path: Path) -> None:
    document = load(path)

    assert replay(document) == []


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda path: path.stem)
def test_golden_history_is_a_whole_workflow_in_the_canonical_encoding(path: Path) -> None:
    document = load(path)
    history = document["history"]

    assert set(document) == {"description", "history", "final_state"}
    assert history[0]["event"]["type"] == "WorkflowAccepted"
    assert all(entry["event"]["type"] != "WorkflowAccepted" for entry in history[1:])
    assert [entry["now_ms"] for entry in history] == sorted(entry["now_ms"] for entry in history)
    # Decoding then encoding gives the same JSON: the file says exactly what the types say.
    for entry in history:
        event = decode_tagged(entry["event"], EVENT_TYPES)
        assert encode_tagged(event) == entry["event"]
        for effect in entry["effects"]:
            assert encode_tagged(decode_tagged(effect, EFFECT_TYPES)) == effect
    final_reports = [
        effect
        for entry in history
        for effect in entry["effects"]
        if effect["type"] == "EmitFinalReport"
    ]
    assert len(final_reports) == 1
    assert final_reports[0]["status"] == document["final_state"]["status"]


def test_replay_catches_an_altered_recorded_effect() -> None:
    document = load(GOLDEN / "whatsapp_not_read_in_time_then_sms_delivered.json")
    sends = [
        effect
        for entry in document["history"]
        for effect in entry["effects"]
        if effect["type"] == "SendMessage" and effect["step"] == 1
    ]
    assert len(sends) == 1
    sends[0]["message_uuid"] = "00000000-0000-4000-8000-000000000000"

    differences = replay(document)

    assert len(differences) == 1
    assert "SendMessage" in differences[0]


def test_replay_catches_a_changed_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    # As if someone decided that meeting the condition on a non-last step sends the next
    # message anyway: the histories where WhatsApp was read in time must notice.
    monkeypatch.setitem(failover.TRANSITIONS, (Signal.MET, Place.TIMED), Move.NEXT)

    document = load(GOLDEN / "whatsapp_read_in_time.json")

    assert replay(document) != []


def test_regenerating_a_history_reproduces_the_recorded_file(tmp_path: Path) -> None:
    for path in GOLDEN_FILES:
        copy = tmp_path / path.name
        copy.write_bytes(path.read_bytes())

        regenerate(copy)

        assert copy.read_bytes() == path.read_bytes(), f"{path.name} is not in canonical form"


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(f"usage: python -m tests.unit.test_engine_histories {GOLDEN}/NAME.json ...")
    for argument in sys.argv[1:]:
        regenerate(Path(argument))
        print(f"regenerated {argument}: review its diff before committing")
