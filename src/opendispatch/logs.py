"""The server's log lines, one event per line whatever a request puts in them.

A request's path, headers and fields reach log messages (a 404 names its path). Left raw, a
path with `%0d%0a` writes a forged line into the log, and ESC or NUL reach the operator's
terminal. So every control character of a message (C0, DEL, C1, and Unicode's line and
paragraph separators) is written as an escape (`\\r`, `\\n`, `\\t`, `\\xNN`, `\\uNNNN`).
Tracebacks keep their lines: they are the server's, not the client's.
"""

from __future__ import annotations

import logging
import sys
from typing import Final

__all__ = ["EscapingFormatter", "configure_logging", "escape_controls"]

_NAMED: Final = {"\r": "\\r", "\n": "\\n", "\t": "\\t"}
_ESCAPES: Final[dict[int, str]] = {
    code: _NAMED.get(chr(code), f"\\x{code:02x}") for code in (*range(0x20), *range(0x7F, 0xA0))
} | {0x2028: "\\u2028", 0x2029: "\\u2029"}


def escape_controls(text: str) -> str:
    return text.translate(_ESCAPES)


class EscapingFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EscapingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])
