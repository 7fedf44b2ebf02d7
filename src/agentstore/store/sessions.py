"""SessionRepository: every statement about the sessions table (queries/sessions.sql)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, LiteralString

from psycopg.types.json import Jsonb

from agentstore.domain.callers import Scope
from agentstore.domain.errors import (
    AlreadyExists,
    ExpectationFailed,
    outside_scope,
    session_not_found,
)
from agentstore.domain.limits import Limits
from agentstore.domain.sessions import (
    Session,
    SessionFilter,
    SessionPatch,
    SessionStatus,
    StoreStats,
)
from agentstore.store.database import Connection, Database
from agentstore.store.queries import query

__all__ = ["SessionCursor", "SessionRepository"]

# (create_time, id) of the last session of a page: ListSessions goes on strictly after it.
SessionCursor = tuple[datetime, str]

INSERT_SESSION = query("sessions", "insert_session")
SELECT_SESSION = query("sessions", "select_session")
SELECT_SESSION_STANDING = query("sessions", "select_session_standing")
LIST_SESSIONS = query("sessions", "list_sessions")
UPDATE_SESSION = query("sessions", "update_session")
SOFT_DELETE_SESSION = query("sessions", "soft_delete_session")
PURGE_SESSION = query("sessions", "purge_session")
UNDELETE_SESSION = query("sessions", "undelete_session")
SOFT_DELETE_SESSIONS = query("sessions", "soft_delete_sessions")
PURGE_SESSIONS = query("sessions", "purge_sessions")
STORE_STATS = query("sessions", "store_stats")
PURGE_EXPIRED = query("sessions", "purge_expired")
PURGE_DELETED = query("sessions", "purge_deleted")


def session_from_row(row: dict[str, Any]) -> Session:
    return Session(
        id=row["id"],
        app_name=row["app_name"],
        user_id=row["user_id"],
        agent_id=row["agent_id"],
        status=SessionStatus(row["status"]),
        metadata=row["metadata"],
        state=row["state"],
        version=row["version"],
        last_seq=row["last_seq"],
        event_count=row["event_count"],
        removed_count=row["removed_count"],
        create_time=row["create_time"],
        update_time=row["update_time"],
        expire_time=row["expire_time"],
        delete_time=row["delete_time"],
        preview=row["preview"],
        last_event_time=row["last_event_time"],
        app_state=row.get("app_state"),
        user_state=row.get("user_state"),
    )


class SessionRepository:
    """Reads and writes sessions, only those of the apps in the `scope` each method is given.
    Methods raise `NotFound` for sessions that are missing, soft-deleted, expired or outside
    the scope, `InvalidArgument` for a state or metadata over its limit, and
    `StoreUnavailable` when the database cannot be reached."""

    def __init__(self, database: Database, limits: Limits) -> None:
        self._database = database
        self._limits = limits

    async def insert(
        self,
        scope: Scope,
        *,
        session_id: str,
        app_name: str,
        user_id: str,
        agent_id: str,
        status: SessionStatus,
        metadata: dict[str, Any],
        state: dict[str, Any],
        ttl: timedelta | None,
        create_time: datetime | None = None,
    ) -> Session:
        """Raises `AlreadyExists` when the id is taken and `PermissionDenied` when the app is
        outside `scope`. `create_time` is kept instead of now when given (an import)."""
        params = {
            "apps": scope.app_names,
            "id": session_id,
            "app_name": app_name,
            "user_id": user_id,
            "agent_id": agent_id,
            "status": status.value,
            "metadata": Jsonb(metadata),
            "state": Jsonb(state),
            "ttl": ttl,
            "create_time": create_time,
            "max_state_bytes": self._limits.max_state_bytes,
            "max_metadata_bytes": self._limits.max_metadata_bytes,
        }
        async with self._database.connection(session_id=session_id) as connection:
            row = await _fetch_one(connection, INSERT_SESSION, params)
        if row is None:
            raise outside_scope(app_name)
        return session_from_row(row)

    async def get(
        self, scope: Scope, session_id: str, *, with_state: bool = True, with_scopes: bool = False
    ) -> Session:
        """A live session; `with_scopes` adds its app's and its user's states."""
        params = {
            "apps": scope.app_names,
            "id": session_id,
            "with_state": with_state,
            "with_scopes": with_scopes,
        }
        async with self._database.connection() as connection:
            row = await _fetch_one(connection, SELECT_SESSION, params)
        if row is None:
            raise session_not_found(session_id)
        return session_from_row(row)

    async def list(
        self,
        scope: Scope,
        session_filter: SessionFilter,
        *,
        after: SessionCursor | None,
        limit: int,
        with_state: bool = True,
    ) -> list[Session]:
        """Sessions matching the filter, newest first by (create_time, id), strictly after the
        cursor."""
        params = {
            "apps": scope.app_names,
            "app_name": session_filter.app_name,
            "user_id": session_filter.user_id,
            "agent_id": session_filter.agent_id,
            "status": session_filter.status.value if session_filter.status else None,
            "show_deleted": session_filter.show_deleted,
            "after_time": after[0] if after else None,
            "after_id": after[1] if after else None,
            "limit": limit,
            "with_state": with_state,
        }
        async with self._database.connection() as connection:
            # Unprepared: see list_sessions in queries/sessions.sql.
            cursor = await connection.execute(LIST_SESSIONS, params, prepare=False)
            rows = await cursor.fetchall()
        return [session_from_row(row) for row in rows]

    async def update(self, scope: Scope, patch: SessionPatch) -> Session:
        """Apply the patch in one statement. Raises `ExpectationFailed` on a version mismatch
        and `InvalidArgument` when the merged state or the metadata would pass its limit."""
        fields = patch.fields
        params = {
            "apps": scope.app_names,
            "id": patch.session_id,
            "set_status": "status" in fields,
            "status": patch.status.value if patch.status else None,
            "set_metadata": "metadata" in fields,
            "metadata": Jsonb(patch.metadata),
            "set_state": "state_delta" in fields,
            "state_delta": Jsonb(patch.state_delta),
            "set_expiry": bool(fields & {"expire_time", "ttl"}),
            "expire_time": patch.expire_time,
            "ttl": patch.ttl,
            "expected_version": patch.expected_version,
            "max_state_bytes": self._limits.max_state_bytes,
            "max_metadata_bytes": self._limits.max_metadata_bytes,
        }
        # One statement in autocommit, one round trip: a limit it passes fails the statement
        # (within_limit), so nothing needs rolling back. Why no row came back is read after.
        async with self._database.connection(session_id=patch.session_id) as connection:
            row = await _fetch_one(connection, UPDATE_SESSION, params)
            if row is None:
                standing = await _fetch_one(
                    connection,
                    SELECT_SESSION_STANDING,
                    {"apps": scope.app_names, "id": patch.session_id},
                )
        if row is not None:
            return session_from_row(row)
        if standing is None or not standing["live"]:
            raise session_not_found(patch.session_id)
        raise ExpectationFailed(
            f"session {patch.session_id!r} is at version {standing['version']}, "
            f"not {patch.expected_version}",
            reason="VERSION_MISMATCH",
            metadata={"current_version": str(standing["version"])},
        )

    async def soft_delete(self, scope: Scope, session_id: str) -> Session:
        params = {"apps": scope.app_names, "id": session_id}
        async with self._database.connection() as connection:
            row = await _fetch_one(connection, SOFT_DELETE_SESSION, params)
        if row is None:
            raise session_not_found(session_id)
        return session_from_row(row)

    async def purge(self, scope: Scope, session_id: str) -> None:
        """Remove the session, live or not, and (by cascade) all its events."""
        params = {"apps": scope.app_names, "id": session_id}
        async with self._database.connection() as connection:
            cursor = await connection.execute(PURGE_SESSION, params)
        if cursor.rowcount == 0:
            raise session_not_found(session_id)

    async def undelete(self, scope: Scope, session_id: str) -> Session:
        params = {"apps": scope.app_names, "id": session_id}
        async with self._database.connection() as connection:
            row = await _fetch_one(connection, UNDELETE_SESSION, params)
            if row is not None:
                return session_from_row(row)
            standing = await _fetch_one(connection, SELECT_SESSION_STANDING, params)
        if standing is None:
            raise session_not_found(session_id)
        raise AlreadyExists(
            f"session {session_id!r} is not deleted",
            reason="SESSION_NOT_DELETED",
            metadata={"session_id": session_id},
        )

    async def delete_many(self, scope: Scope, app_name: str, user_id: str, *, purge: bool) -> int:
        """Soft-delete (or purge) the sessions of an app, or of one of its users."""
        statement = PURGE_SESSIONS if purge else SOFT_DELETE_SESSIONS
        params = {"apps": scope.app_names, "app_name": app_name, "user_id": user_id}
        async with self._database.connection() as connection:
            cursor = await connection.execute(statement, params)
        return cursor.rowcount

    async def store_stats(self, scope: Scope, app_name: str) -> StoreStats:
        params = {"apps": scope.app_names, "app_name": app_name}
        async with self._database.connection() as connection:
            row = await _fetch_one(connection, STORE_STATS, params)
        assert row is not None  # an aggregate always has its row
        return StoreStats(
            total_sessions=row["total_sessions"],
            active_sessions=row["active_sessions"],
            deleted_sessions=row["deleted_sessions"],
            expired_sessions=row["expired_sessions"],
            total_events=row["total_events"],
            active_sessions_by_status=dict(row["active_sessions_by_status"]),
        )

    async def purge_expired(self, grace: timedelta, batch: int) -> int:
        """Purge up to `batch` sessions that expired more than `grace` ago, in every app (the
        reaper acts for the store itself)."""
        async with self._database.connection() as connection:
            cursor = await connection.execute(PURGE_EXPIRED, {"grace": grace, "batch": batch})
        return cursor.rowcount

    async def purge_deleted(self, retention: timedelta, batch: int) -> int:
        """Purge up to `batch` sessions soft-deleted more than `retention` ago."""
        async with self._database.connection() as connection:
            params = {"retention": retention, "batch": batch}
            cursor = await connection.execute(PURGE_DELETED, params)
        return cursor.rowcount


async def _fetch_one(
    connection: Connection, statement: LiteralString, params: dict[str, Any]
) -> dict[str, Any] | None:
    cursor = await connection.execute(statement, params)
    return await cursor.fetchone()
