"""The server's log lines, one event per line whatever a request puts in them.

A request's path, headers and fields reach log messages (a 404 names its path). Left raw, a
path with `%0d%0a` writes a forged line into the log, and ESC or NUL reach the operator's
terminal. So every control character of a message (C0, DEL, C1, and Unicode's line and
paragraph separators) is written as an escape (`\\r`, `\\n`, `\\t`, `\\xNN`, `\\uNNNN`).
Tracebacks keep their lines: they are the server's, not the client's.

Two formats (`--log-format`): `text`, `time LEVEL logger: message`, for people; and `json`,
one JSON object per line (`time`, `level`, `logger`, `message`, and for the events of
`event_log` the event's name and each of its fields as a key), for log collectors. A JSON
line is pure ASCII, with every control character escaped, so a record is one line there too.
Everything that logs goes through the one handler on the root logger: uvicorn's own lines as
well (it is run with `log_config=None`, so it adds no handler of its own).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Sequence
from typing import Final

from opendispatch.timefmt import iso_ms

__all__ = [
    "LOG_FORMATS",
    "EventKind",
    "EventLine",
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "escape_controls",
    "json_line",
]

LOG_FORMATS: Final = ("text", "json")

_NAMED: Final = {"\r": "\\r", "\n": "\\n", "\t": "\\t"}
_ESCAPES: Final[dict[int, str]] = {
    code: _NAMED.get(chr(code), f"\\x{code:02x}") for code in (*range(0x20), *range(0x7F, 0xA0))
} | {0x2028: "\\u2028", 0x2029: "\\u2029"}


def escape_controls(text: str) -> str:
    return text.translate(_ESCAPES)


class EventKind:
    """One kind of event line: its name (`workflow accepted`) and the names of its fields,
    in the order the text format writes them."""

    __slots__ = ("keys", "name")

    def __init__(self, name: str, *keys: str) -> None:
        self.name = name
        self.keys = keys


# A value is quoted (logfmt's way) when it could not be read back from `key=value` as is.
_NEEDS_QUOTES: Final = re.compile(r'[\s"=\\]')


def _text(value: object) -> str:
    if value is None:
        return "-"
    if type(value) is int:
        return str(value)
    text = str(value)
    if text and not _NEEDS_QUOTES.search(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class EventLine:
    """An event as a log record's message: `name key=value ...` is made only when a handler
    writes it (a record whose level is off is never built at all), and the JSON format reads
    the fields as they are, not back from the text."""

    __slots__ = ("kind", "values")

    def __init__(self, kind: EventKind, values: Sequence[object]) -> None:
        self.kind = kind
        self.values = values

    def __str__(self) -> str:
        parts = [self.kind.name]
        for key, value in zip(self.kind.keys, self.values, strict=True):
            parts += (" ", key, "=", _text(value))
        return "".join(parts)


class TextFormatter(logging.Formatter):
    """`2026-11-30 12:00:00,123 INFO logger: message`, the message's control characters
    escaped, then any traceback on its own lines.

    Put together by hand rather than through a `%(...)s` format: with the handler below, a
    line costs 7-9 us instead of 13-15 (in-process, min of 9 runs), and the event lines are
    several per workflow."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if not message.isprintable():  # a C scan: most messages have nothing to escape
            message = escape_controls(message)
        line = f"{self.formatTime(record)} {record.levelname} {record.name}: {message}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return line

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """As `logging` writes it; the local time of a second is worked out once for all the
        lines in it (a third of a line's formatting otherwise)."""
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime(self.default_time_format, time.localtime(second))
        return f"{self._second_text},{int(record.msecs):03d}"

    _second = -1
    _second_text = ""


class _LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """One write per record. `sys.stderr` is not buffered (each write reaches the file at
    once), so `StreamHandler`'s flush after every record is a second call for nothing."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + "\n")
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


# ensure_ascii: every character beyond printable ASCII is a `\uXXXX` escape, so no record
# can break its line (whatever splits lines: `\n`, `\u2028`, NEL) or reach a terminal raw.
_encode_json: Final = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), default=str).encode


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = _entry(
            int(record.created * 1000), record.levelname, record.name, record.getMessage()
        )
        line = record.msg
        if isinstance(line, EventLine):
            entry["event"] = line.kind.name
            entry.update(zip(line.kind.keys, line.values, strict=True))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return _encode_json(entry)


def json_line(level: str, logger: str, message: str, **fields: object) -> str:
    """A line in the JSON format written without a record (before logging is set up)."""
    return _encode_json(_entry(int(time.time() * 1000), level, logger, message) | fields)


def _entry(at_ms: int, level: str, logger: str, message: str) -> dict[str, object]:
    """The keys every JSON line begins with, in this order."""
    return {"time": iso_ms(at_ms), "level": level, "logger": logger, "message": message}


def configure_logging(level: str, log_format: str = "text") -> None:
    """Every logger, ours and uvicorn's, writes through one handler on stderr."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    handler = _LineHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler])
    logging.captureWarnings(True)  # Python's warnings too, in the same format, not raw
    # What every record would otherwise look up and no format here shows: the caller's file
    # and line (a walk up the stack), the thread, the process (the knobs of the logging
    # HOWTO's "Optimization"). Measured, about a tenth of a line's cost.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
