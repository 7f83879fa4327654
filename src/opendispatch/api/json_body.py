"""The one door every JSON request body goes through before any model looks at it.

Two parsers read bodies here (pydantic for the hot path, msgspec for the thorough one and for
reading stored workflows back), and they disagree at the edges: pydantic takes `NaN`,
`Infinity` and `1e400` (as infinity) and nests to about 255 levels before its serializer
gives up; msgspec refuses all three and nests to about 1,000 before raising `RecursionError`.
A body one accepted and the other could not read was stored, then answered 500 on every GET.
So every body is first held to the strictest reading of JSON, once, here:

- at most `MAX_DEPTH` levels of arrays and objects, counted on the raw bytes (strings
  skipped) before any parser recurses: real workflows nest about 8 deep;
- numbers are finite: `NaN` and `Infinity` are not JSON (RFC 8259), and a number too large
  for a double is refused rather than read as infinity;
- what passes is exactly what msgspec reads back, so whatever is stored can be shown again.

A refused body is a 400 naming the field when one is to blame.
"""

from __future__ import annotations

import math
from typing import Final

import msgspec
import pydantic_core

from opendispatch.errors import InvalidParameter, InvalidRequest

__all__ = ["MAX_DEPTH", "read_json"]

# Arrays and objects inside one another, the body itself being level 1. The same as
# System.Text.Json's default; far below what either parser (or the GET view) can handle.
MAX_DEPTH: Final = 64

_decode = msgspec.json.Decoder().decode
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def read_json(body: bytes, *, name: str = "body") -> object:
    """The decoded body, or `InvalidRequest` (400) saying what is wrong and where."""
    if _too_deep(body):
        raise _refused(name, f"nests arrays and objects more than {MAX_DEPTH} levels deep")
    try:
        return _decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        problem = str(exc)
    path = _non_finite_number(body)
    if path is not None:
        raise _refused(
            path or name, "must be a finite number (NaN and Infinity are not JSON)"
        ) from None
    raise _refused(name, f"is not valid JSON: {problem}") from None


def _too_deep(body: bytes) -> bool:
    # Brackets inside strings can only make the first count larger: when it is small enough,
    # the body is (the common case, two `count`s). Otherwise count only structural brackets.
    if body.count(b"[") + body.count(b"{") <= MAX_DEPTH:
        return False
    # Escapes first (`\\` then `\"`, pairing backslashes left to right as JSON does): every
    # quote left delimits a string, so every other piece between quotes is outside strings.
    # All of it runs in C: a hostile 250 KB body costs a few milliseconds.
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(unescaped.split(b'"')[::2])
    depth = 0
    for byte in outside.translate(None, _NOT_BRACKETS):
        depth += _STEP[byte]
        if depth > MAX_DEPTH:
            return True
    return False


def _non_finite_number(body: bytes) -> str | None:
    """Where the body holds NaN, Infinity or an overflowing number (None: it does not)."""
    try:
        document = pydantic_core.from_json(body, allow_inf_nan=True)
    except ValueError:
        return None
    return _find_non_finite(document, "")


def _find_non_finite(node: object, path: str) -> str | None:
    if isinstance(node, float) and not math.isfinite(node):
        return path
    if isinstance(node, dict):
        children = [(f"{path}.{key}" if path else str(key), value) for key, value in node.items()]
    elif isinstance(node, list):
        children = [(f"{path}[{index}]", value) for index, value in enumerate(node)]
    else:
        return None
    for child_path, child in children:
        found = _find_non_finite(child, child_path)
        if found is not None:
            return found
    return None


def _refused(name: str, reason: str) -> InvalidRequest:
    return InvalidRequest(
        "The request body is not valid JSON.",
        invalid_parameters=(InvalidParameter(name, reason),),
    )
