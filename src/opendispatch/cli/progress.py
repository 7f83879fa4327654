"""Progress of a long command (replaying many webhooks, retention catch-up) on stderr.

On a terminal, one line rewritten in place (at most ten times a second); elsewhere nothing,
unless `--progress` asks for it, then a line per step, so a log or a test can read it.
stdout keeps only the command's answer (its summary line), whatever is shown here.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

import click

__all__ = ["Progress", "progress_option"]

progress_option = click.option(
    "--progress",
    "show_progress",
    is_flag=True,
    help="Show progress on stderr even when it is not a terminal (a line per step).",
)


class Progress:
    def __init__(
        self, what: str, *, total: int | None, forced: bool, stream: TextIO | None = None
    ) -> None:
        self._stream = stream or sys.stderr
        self._terminal = self._stream.isatty()
        self.enabled = forced or self._terminal
        self._what = what
        self._total = total
        self._started = time.monotonic()
        self._shown_at = 0.0
        self._shown = False

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self._terminal and now - self._shown_at < 0.1:
            return
        self._shown_at = now
        self._shown = True
        text = f"{self._what}: {done:,}"
        if self._total:
            text += f" of {self._total:,} ({100 * done // self._total}%)"
        elapsed = now - self._started
        if elapsed >= 0.5:
            text += f", {done / elapsed:,.0f}/s"
        if self._terminal:
            self._stream.write(f"\r{text}\x1b[K")
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def close(self) -> None:
        """End the line rewritten in place, before the summary is printed."""
        if self._terminal and self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
