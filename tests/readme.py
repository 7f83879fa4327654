"""README.md's fenced code blocks, read the way the README tests need them.

A block belongs to the `## ` section it sits under, so tests can say "every shell block of
'Try it', in order". Only what a reader would copy matters here: the language after the
opening fence and the lines up to the closing one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tests.support import REPO

__all__ = ["README", "SHELL_LANGUAGES", "Block", "blocks", "shell_blocks"]

README = REPO / "README.md"

# Every fence a reader would paste into a terminal: none of them may escape the mapping.
SHELL_LANGUAGES = frozenset({"sh", "bash", "shell", "console", "zsh"})

_OPENING = re.compile(r"^```\s*([\w+-]*)")


@dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    """One fenced block: its section, its language, the line of its opening fence, its text."""

    section: str
    language: str
    line: int
    text: str

    def where(self) -> str:
        first = self.text.strip().splitlines()[0] if self.text.strip() else ""
        return f"README.md:{self.line} ({self.section}): {first[:70]}"


def blocks(path: Path = README) -> list[Block]:
    """Every fenced block of the file, in order."""
    found: list[Block] = []
    section = ""
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("## "):
            section = line[3:].strip()
        opening = _OPENING.match(line)
        if opening:
            start = index
            body: list[str] = []
            index += 1
            while index < len(lines) and not lines[index].startswith("```"):
                body.append(lines[index])
                index += 1
            text = "\n".join(body) + "\n"
            found.append(Block(section=section, language=opening[1], line=start + 1, text=text))
        index += 1
    return found


def shell_blocks(path: Path = README) -> list[Block]:
    """The blocks a reader runs in a terminal."""
    return [block for block in blocks(path) if block.language in SHELL_LANGUAGES]
