"""SessionRepository: every SQL statement about the sessions table, and nothing else."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, LiteralString

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from agentstore.domain.errors import AlreadyExists, ExpectationFailed, InvalidArgument, NotFound
from agentstore.domain.sessions import (
    Session,
    SessionFilter,
    SessionPatch,
    SessionStatus,
    StoreStats,
)
from agentstore.store.database import Connection, Database

__all__ = ["LIVE", "SessionCursor", "SessionRepository", "session_not_found"]

# (create_time, id) of the last session of a page: ListSessions goes on strictly after it.
SessionCursor = tuple[datetime, str]

COLUMNS: LiteralString = """
    id, app_name, user_id, agent_id, status, metadata, state, version, last_seq, event_count,
    create_time, update_time, expire_time, delete_time
"""
BASIC_COLUMNS: LiteralString = """
    id, app_name, user_id, agent_id, status, metadata, '{}'::jsonb AS state, version, last_seq,
    event_count, create_time, update_time, expire_time, delete_time
"""
# A live session is neither soft-deleted nor expired; everything else reads as not found.
LIVE: LiteralString = "delete_time IS NULL AND (expire_time IS NULL OR expire_time > now())"

INSERT_SESSION: LiteralString = f"""
INSERT INTO sessions (id, app_name, user_id, agent_id, status, metadata, state, expire_time)
VALUES (%(id)s, %(app_name)s, %(user_id)s, %(agent_id)s, %(status)s, %(metadata)s, %(state)s,
        now() + %(ttl)s::interval)
RETURNING {COLUMNS}
"""
SELECT_LIVE_SESSION: LiteralString = f"SELECT {COLUMNS} FROM sessions WHERE id = %(id)s AND {LIVE}"
SELECT_LIVE_SESSION_BASIC: LiteralString = (
    f"SELECT {BASIC_COLUMNS} FROM sessions WHERE id = %(id)s AND {LIVE}"
)
SELECT_SESSION_STANDING: LiteralString = (
    f"SELECT version, ({LIVE}) AS live FROM sessions WHERE id = %(id)s"
)
# The state merge: keys with a value are set (||), keys whose value is null are removed (-).
UPDATE_SESSION: LiteralString = f"""
UPDATE sessions SET
    status = CASE WHEN %(set_status)s THEN %(status)s ELSE status END,
    metadata = CASE WHEN %(set_metadata)s THEN %(metadata)s ELSE metadata END,
    state = (state || %(state_set)s) - %(state_remove)s::text[],
    expire_time = CASE
        WHEN %(set_expiry)s THEN COALESCE(%(expire_time)s, now() + %(ttl)s::interval)
        ELSE expire_time END,
    version = version + 1,
    update_time = now()
WHERE id = %(id)s AND {LIVE}
  AND (%(expected_version)s::bigint IS NULL OR version = %(expected_version)s::bigint)
RETURNING {COLUMNS}, octet_length(state::text) AS state_bytes
"""
SOFT_DELETE_SESSION: LiteralString = f"""
UPDATE sessions SET delete_time = now(), update_time = now(), version = version + 1
WHERE id = %(id)s AND {LIVE}
RETURNING {COLUMNS}
"""
PURGE_SESSION: LiteralString = "DELETE FROM sessions WHERE id = %(id)s"
# Undelete also lifts an expiry that has passed: otherwise the session would stay invisible.
UNDELETE_SESSION: LiteralString = f"""
UPDATE sessions SET
    delete_time = NULL,
    expire_time = CASE WHEN expire_time <= now() THEN NULL ELSE expire_time END,
    update_time = now(),
    version = version + 1
WHERE id = %(id)s AND NOT ({LIVE})
RETURNING {COLUMNS}
"""
SOFT_DELETE_SESSIONS: LiteralString = f"""
UPDATE sessions SET delete_time = now(), update_time = now(), version = version + 1
WHERE app_name = %(app_name)s AND {LIVE}
"""
SOFT_DELETE_USER_SESSIONS: LiteralString = f"""
UPDATE sessions SET delete_time = now(), update_time = now(), version = version + 1
WHERE app_name = %(app_name)s AND user_id = %(user_id)s AND {LIVE}
"""
PURGE_SESSIONS: LiteralString = "DELETE FROM sessions WHERE app_name = %(app_name)s"
PURGE_USER_SESSIONS: LiteralString = (
    "DELETE FROM sessions WHERE app_name = %(app_name)s AND user_id = %(user_id)s"
)
STORE_STATS: LiteralString = f"""
WITH scoped AS (
    SELECT * FROM sessions WHERE %(app_name)s = '' OR app_name = %(app_name)s
), by_status AS (
    SELECT status, count(*) AS n FROM scoped WHERE {LIVE} GROUP BY status
)
SELECT (SELECT count(*) FROM scoped) AS total_sessions,
       (SELECT count(*) FROM scoped WHERE {LIVE}) AS active_sessions,
       (SELECT count(*) FROM scoped WHERE delete_time IS NOT NULL) AS deleted_sessions,
       (SELECT count(*) FROM scoped WHERE delete_time IS NULL AND expire_time <= now())
           AS expired_sessions,
       (SELECT COALESCE(sum(event_count), 0)::bigint FROM scoped) AS total_events,
       (SELECT COALESCE(jsonb_object_agg(status, n), '{{}}'::jsonb) FROM by_status)
           AS active_sessions_by_status
"""
# The reaper: one batch at a time, skipping rows another replica is already deleting.
PURGE_EXPIRED: LiteralString = """
WITH doomed AS (
    SELECT id FROM sessions
    WHERE expire_time < now() - %(grace)s::interval
    ORDER BY expire_time
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM sessions USING doomed WHERE sessions.id = doomed.id
"""
PURGE_DELETED: LiteralString = """
WITH doomed AS (
    SELECT id FROM sessions
    WHERE delete_time < now() - %(retention)s::interval
    ORDER BY delete_time
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM sessions USING doomed WHERE sessions.id = doomed.id
"""


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
        create_time=row["create_time"],
        update_time=row["update_time"],
        expire_time=row["expire_time"],
        delete_time=row["delete_time"],
    )


def session_not_found(session_id: str) -> NotFound:
    return NotFound(
        f"session {session_id!r} not found",
        reason="SESSION_NOT_FOUND",
        metadata={"session_id": session_id},
    )


class SessionRepository:
    """Reads and writes sessions. Methods raise `NotFound` for sessions that are missing,
    soft-deleted or expired, and `StoreUnavailable` when the database cannot be reached."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def insert(
        self,
        *,
        session_id: str,
        app_name: str,
        user_id: str,
        agent_id: str,
        status: SessionStatus,
        metadata: dict[str, Any],
        state: dict[str, Any],
        ttl: timedelta | None,
    ) -> Session:
        params = {
            "id": session_id,
            "app_name": app_name,
            "user_id": user_id,
            "agent_id": agent_id,
            "status": status.value,
            "metadata": Jsonb(metadata),
            "state": Jsonb(state),
            "ttl": ttl,
        }
        try:
            async with self._database.connection() as connection:
                row = await _fetch_one(connection, INSERT_SESSION, params)
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name == "sessions_pkey":
                raise AlreadyExists(
                    f"session {session_id!r} already exists",
                    reason="SESSION_ALREADY_EXISTS",
                    metadata={"session_id": session_id},
                ) from exc
            raise
        assert row is not None
        return session_from_row(row)

    async def get(self, session_id: str, *, with_state: bool = True) -> Session:
        query = SELECT_LIVE_SESSION if with_state else SELECT_LIVE_SESSION_BASIC
        async with self._database.connection() as connection:
            row = await _fetch_one(connection, query, {"id": session_id})
        if row is None:
            raise session_not_found(session_id)
        return session_from_row(row)

    async def list(
        self,
        session_filter: SessionFilter,
        *,
        after: SessionCursor | None,
        limit: int,
        with_state: bool = True,
    ) -> list[Session]:
        """Sessions matching the filter, newest first by (create_time, id), strictly after the
        cursor."""
        conditions: list[sql.Composable] = []
        params: dict[str, Any] = {"limit": limit}
        if session_filter.app_name:
            conditions.append(sql.SQL("app_name = %(app_name)s"))
            params["app_name"] = session_filter.app_name
        if session_filter.user_id:
            conditions.append(sql.SQL("user_id = %(user_id)s"))
            params["user_id"] = session_filter.user_id
        if session_filter.agent_id:
            conditions.append(sql.SQL("agent_id = %(agent_id)s"))
            params["agent_id"] = session_filter.agent_id
        if session_filter.status is not None:
            conditions.append(sql.SQL("status = %(status)s"))
            params["status"] = session_filter.status.value
        if not session_filter.show_deleted:
            conditions.append(sql.SQL(LIVE))
        if after is not None:
            conditions.append(sql.SQL("(create_time, id) < (%(after_time)s, %(after_id)s)"))
            params["after_time"], params["after_id"] = after
        where = sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("true")
        query = sql.SQL(
            "SELECT {columns} FROM sessions WHERE {where} "
            "ORDER BY create_time DESC, id DESC LIMIT %(limit)s"
        ).format(columns=sql.SQL(COLUMNS if with_state else BASIC_COLUMNS), where=where)
        async with self._database.connection() as connection:
            cursor = await connection.execute(query, params)
            rows = await cursor.fetchall()
        return [session_from_row(row) for row in rows]

    async def update(self, patch: SessionPatch, *, max_state_bytes: int) -> Session:
        """Apply the patch in one statement. Raises `ExpectationFailed` on a version mismatch
        and `InvalidArgument` when the merged state would exceed `max_state_bytes`."""
        state_set = {k: v for k, v in patch.state_delta.items() if v is not None}
        state_remove = [k for k, v in patch.state_delta.items() if v is None]
        fields = patch.fields
        params = {
            "id": patch.session_id,
            "set_status": "status" in fields,
            "status": patch.status.value if patch.status else None,
            "set_metadata": "metadata" in fields,
            "metadata": Jsonb(patch.metadata),
            "state_set": Jsonb(state_set if "state_delta" in fields else {}),
            "state_remove": state_remove if "state_delta" in fields else [],
            "set_expiry": bool(fields & {"expire_time", "ttl"}),
            "expire_time": patch.expire_time,
            "ttl": patch.ttl,
            "expected_version": patch.expected_version,
        }
        async with self._database.transaction() as connection:
            row = await _fetch_one(connection, UPDATE_SESSION, params)
            if row is None:
                standing = await _fetch_one(
                    connection, SELECT_SESSION_STANDING, {"id": patch.session_id}
                )
                if standing is None or not standing["live"]:
                    raise session_not_found(patch.session_id)
                raise ExpectationFailed(
                    f"session {patch.session_id!r} is at version {standing['version']}, "
                    f"not {patch.expected_version}",
                    reason="VERSION_MISMATCH",
                    metadata={"current_version": str(standing["version"])},
                )
            if row["state_bytes"] > max_state_bytes:
                # Raising inside the block rolls the update back.
                raise InvalidArgument.of(
                    "state_delta", f"the merged state would exceed {max_state_bytes} bytes"
                )
        return session_from_row(row)

    async def soft_delete(self, session_id: str) -> Session:
        async with self._database.connection() as connection:
            row = await _fetch_one(connection, SOFT_DELETE_SESSION, {"id": session_id})
        if row is None:
            raise session_not_found(session_id)
        return session_from_row(row)

    async def purge(self, session_id: str) -> None:
        """Remove the session, live or not, and (by cascade) all its events."""
        async with self._database.connection() as connection:
            cursor = await connection.execute(PURGE_SESSION, {"id": session_id})
            if cursor.rowcount == 0:
                raise session_not_found(session_id)

    async def undelete(self, session_id: str) -> Session:
        async with self._database.connection() as connection:
            row = await _fetch_one(connection, UNDELETE_SESSION, {"id": session_id})
            if row is not None:
                return session_from_row(row)
            standing = await _fetch_one(connection, SELECT_SESSION_STANDING, {"id": session_id})
        if standing is None:
            raise session_not_found(session_id)
        raise AlreadyExists(
            f"session {session_id!r} is not deleted",
            reason="SESSION_NOT_DELETED",
            metadata={"session_id": session_id},
        )

    async def delete_many(self, app_name: str, user_id: str, *, purge: bool) -> int:
        if purge:
            query = PURGE_USER_SESSIONS if user_id else PURGE_SESSIONS
        else:
            query = SOFT_DELETE_USER_SESSIONS if user_id else SOFT_DELETE_SESSIONS
        async with self._database.connection() as connection:
            cursor = await connection.execute(query, {"app_name": app_name, "user_id": user_id})
            return cursor.rowcount

    async def store_stats(self, app_name: str) -> StoreStats:
        async with self._database.connection() as connection:
            row = await _fetch_one(connection, STORE_STATS, {"app_name": app_name})
        assert row is not None
        return StoreStats(
            total_sessions=row["total_sessions"],
            active_sessions=row["active_sessions"],
            deleted_sessions=row["deleted_sessions"],
            expired_sessions=row["expired_sessions"],
            total_events=row["total_events"],
            active_sessions_by_status=dict(row["active_sessions_by_status"]),
        )

    async def purge_expired(self, grace: timedelta, batch: int) -> int:
        """Purge up to `batch` sessions that expired more than `grace` ago."""
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
    connection: Connection, query: LiteralString, params: dict[str, Any]
) -> dict[str, Any] | None:
    cursor = await connection.execute(query, params)
    return await cursor.fetchone()
