"""What the PostgreSQL connector needs of asyncpg besides its calls: the errors it raises,
converted into a `StoreError` where they enter our code, and identifier quoting.

asyncpg ships no type information, so its objects are `Any` here; the store's public methods
take and return only our own records.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg

from opendispatch.errors import StoreError

__all__ = ["DRIVER_ERRORS", "Connection", "Pool", "quote_identifier", "store_error"]

Pool: TypeAlias = Any  # asyncpg.Pool
Connection: TypeAlias = Any  # asyncpg.Connection (or a pool's proxy of one)

# What the driver raises: server errors, client-side misuse and protocol errors, and the
# socket's own errors (refused, reset, timed out) when the server cannot be reached.
DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,  # TimeoutError included
)

# Trying again can succeed after these: the transaction lost a race (serialization failure,
# deadlock) or the server is briefly unreachable, restarting or out of connection slots.
# Class 08 (connection exceptions) is matched by its prefix.
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "53300", "57P01", "57P02", "57P03"})


def store_error(what: str, exc: BaseException, *, cls: type[StoreError] = StoreError) -> StoreError:
    """The `StoreError` (or subclass) for a driver error, with its retry hint."""
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = str(getattr(exc, "sqlstate", "") or "")
        retryable = sqlstate.startswith("08") or sqlstate in _RETRYABLE_SQLSTATES
    else:
        retryable = isinstance(exc, OSError)
    return cls(f"{what} failed: {type(exc).__name__}: {exc}", retryable=retryable)


def quote_identifier(name: str) -> str:
    """A schema name as SQL identifier: DDL and `search_path` take no bind parameters."""
    return '"' + name.replace('"', '""') + '"'
