"""KeyRepository: the api_keys table (queries/keys.sql)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agentstore.domain.callers import Role
from agentstore.domain.errors import NotFound
from agentstore.domain.keys import ApiKey
from agentstore.store.database import Database
from agentstore.store.queries import query

__all__ = ["KeyRepository"]

INSERT_KEY = query("keys", "insert_key")
SELECT_USABLE_KEY = query("keys", "select_usable_key")
SELECT_KEY_IS_USABLE = query("keys", "select_key_is_usable")
LIST_KEYS = query("keys", "list_keys")
REVOKE_KEY = query("keys", "revoke_key")
TOUCH_KEY = query("keys", "touch_key")


def _key_from_row(row: dict[str, Any]) -> ApiKey:
    return ApiKey(
        id=row["id"],
        name=row["name"],
        apps=tuple(row["apps"]) if row["apps"] is not None else None,
        role=Role(row["role"]),
        create_time=row["create_time"],
        expire_time=row["expire_time"],
        revoke_time=row["revoke_time"],
        last_used_time=row["last_used_time"],
    )


class KeyRepository:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def insert(
        self,
        *,
        key_id: str,
        name: str,
        key_hash: bytes,
        apps: tuple[str, ...] | None,
        role: Role,
        expire_time: datetime | None,
    ) -> ApiKey:
        params = {
            "id": key_id,
            "name": name,
            "key_hash": key_hash,
            "apps": list(apps) if apps is not None else None,
            "role": role.value,
            "expire_time": expire_time,
        }
        async with self._database.connection() as connection:
            cursor = await connection.execute(INSERT_KEY, params)
            row = await cursor.fetchone()
        assert row is not None  # an INSERT returns its row
        return _key_from_row(row)

    async def find_usable(self, key_hash: bytes) -> tuple[str, tuple[str, ...] | None, Role] | None:
        """The id, apps and role of the unrevoked, unexpired key with this hash."""
        async with self._database.connection() as connection:
            cursor = await connection.execute(SELECT_USABLE_KEY, {"key_hash": key_hash})
            row = await cursor.fetchone()
            if row is not None:
                await connection.execute(TOUCH_KEY, {"id": row["id"]})
        if row is None:
            return None
        apps = tuple(row["apps"]) if row["apps"] is not None else None
        return row["id"], apps, Role(row["role"])

    async def is_usable(self, key_id: str) -> bool:
        """Whether the key is still neither revoked nor expired."""
        async with self._database.connection() as connection:
            cursor = await connection.execute(SELECT_KEY_IS_USABLE, {"id": key_id})
            row = await cursor.fetchone()
        return bool(row is not None and row["usable"])

    async def list(self) -> list[ApiKey]:
        async with self._database.connection() as connection:
            cursor = await connection.execute(LIST_KEYS)
            rows = await cursor.fetchall()
        return [_key_from_row(row) for row in rows]

    async def revoke(self, key_id: str) -> ApiKey:
        """Raises `NotFound` for a key that does not exist or is revoked already."""
        async with self._database.connection() as connection:
            cursor = await connection.execute(REVOKE_KEY, {"id": key_id})
            row = await cursor.fetchone()
        if row is None:
            raise NotFound(f"no unrevoked key {key_id!r}", reason="KEY_NOT_FOUND")
        return _key_from_row(row)
