"""Operators (the people who use the dashboard) and their sessions, in the database.

Sessions are rows rather than signed cookies: every server process on one PostgreSQL knows
every session, a restart signs nobody out, and logging out or deleting an operator ends a
session everywhere at once. Only hashes are kept, of the login token and of the session id
(see `auth.operators`): a copy of these tables opens nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from opendispatch.store.connector import Connector

__all__ = ["Operator", "OperatorStore"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Operator:
    name: str
    created_at_ms: int
    sessions: int  # signed in now, in how many browsers


class OperatorStore:
    def __init__(self, connector: Connector) -> None:
        self._connector = connector

    async def create(self, name: str, *, token_hash: str, now_ms: int) -> bool:
        """False, changing nothing, if the name is taken."""
        changed = await self._connector.execute(
            "insert_operator", {"name": name, "token_hash": token_hash, "now_ms": now_ms}
        )
        return changed > 0

    async def list(self, *, now_ms: int) -> list[Operator]:
        rows = await self._connector.fetch_all("list_operators", {"now_ms": now_ms})
        return [
            Operator(name=row["name"], created_at_ms=row["created_at_ms"], sessions=row["sessions"])
            for row in rows
        ]

    async def token_hash(self, name: str) -> str | None:
        row = await self._connector.fetch_one("operator_token_hash", {"name": name})
        return None if row is None else str(row["token_hash"])

    async def delete(self, name: str) -> bool:
        """Delete the operator and end their sessions; False if there was none."""
        return await self._connector.execute("delete_operator", {"name": name}) > 0

    async def open_session(
        self, id_hash: str, *, operator: str, now_ms: int, expires_at_ms: int
    ) -> None:
        await self._connector.execute(
            "insert_operator_session",
            {
                "id_hash": id_hash,
                "operator": operator,
                "now_ms": now_ms,
                "expires_at_ms": expires_at_ms,
            },
        )

    async def session_operator(self, id_hash: str, *, now_ms: int) -> str | None:
        """Whose session this is, while it has not expired."""
        row = await self._connector.fetch_one(
            "operator_session", {"id_hash": id_hash, "now_ms": now_ms}
        )
        return None if row is None else str(row["operator"])

    async def close_session(self, id_hash: str) -> None:
        await self._connector.execute("delete_operator_session", {"id_hash": id_hash})

    async def forget_expired_sessions(self, *, now_ms: int) -> int:
        return await self._connector.execute("forget_expired_operator_sessions", {"now_ms": now_ms})
