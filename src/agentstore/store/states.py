"""StateRepository: the state of an app, or of one user of an app (queries/states.sql)."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from agentstore.domain.callers import Scope
from agentstore.domain.errors import ExpectationFailed, outside_scope
from agentstore.domain.limits import Limits
from agentstore.domain.sessions import ScopedState, StatePatch
from agentstore.store.database import Database
from agentstore.store.queries import query

__all__ = ["StateRepository"]

SELECT_APP_STATE = query("states", "select_app_state")
SELECT_USER_STATE = query("states", "select_user_state")
UPDATE_APP_STATE = query("states", "update_app_state")
UPDATE_USER_STATE = query("states", "update_user_state")


def _state_from_row(row: dict[str, Any]) -> ScopedState:
    return ScopedState(
        app_name=row["app_name"],
        user_id=row["user_id"],
        state=row["state"],
        version=row["version"],
        update_time=row["update_time"],
    )


class StateRepository:
    def __init__(self, database: Database, limits: Limits) -> None:
        self._database = database
        self._limits = limits

    async def get(self, scope: Scope, app_name: str, user_id: str) -> ScopedState:
        """The app's state (empty `user_id`) or its user's. Raises `PermissionDenied` for an
        app outside `scope`."""
        statement = SELECT_USER_STATE if user_id else SELECT_APP_STATE
        params = {"apps": scope.app_names, "app_name": app_name, "user_id": user_id}
        async with self._database.connection() as connection:
            cursor = await connection.execute(statement, params)
            row = await cursor.fetchone()
        if row is None:
            raise outside_scope(app_name)
        return _state_from_row(row)

    async def update(self, scope: Scope, patch: StatePatch) -> ScopedState:
        """Merge the patch's delta. Raises `ExpectationFailed` (with the current version) when
        `expected_version` does not hold, `InvalidArgument` past the size limit."""
        statement = UPDATE_USER_STATE if patch.user_id else UPDATE_APP_STATE
        params = {
            "apps": scope.app_names,
            "app_name": patch.app_name,
            "user_id": patch.user_id,
            "delta": Jsonb(patch.state_delta),
            "expected_version": patch.expected_version,
            "max_state_bytes": self._limits.max_state_bytes,
        }
        async with self._database.connection() as connection:
            cursor = await connection.execute(statement, params)
            row = await cursor.fetchone()
        if row is not None:
            return _state_from_row(row)
        current = await self.get(scope, patch.app_name, patch.user_id)
        raise ExpectationFailed(
            f"the state is at version {current.version}, not {patch.expected_version}",
            reason="VERSION_MISMATCH",
            metadata={"current_version": str(current.version)},
        )
