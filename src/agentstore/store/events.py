"""EventRepository: appends, reads and per-session counters of the event log.

An append takes the rows of the sessions it writes to `FOR UPDATE`, in id order so that two
transactions never wait on each other in a cycle. That row lock is what makes `seq` gapless
and in commit order per session, and it costs nothing across sessions."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, LiteralString

from psycopg import sql
from psycopg.types.json import Jsonb

from agentstore.domain.errors import DomainError, ExpectationFailed, InvalidArgument
from agentstore.domain.events import (
    AppendMessage,
    AppendOutcome,
    Event,
    EventFilter,
    SessionStats,
)
from agentstore.store.database import Connection, Database
from agentstore.store.sessions import LIVE, session_not_found

__all__ = ["AppendResult", "EventRepository"]

LOCK_SESSIONS: LiteralString = f"""
SELECT id, app_name, user_id, last_seq, ({LIVE}) AS live,
       events_by_type, events_by_author, events_by_role, text_chars
FROM sessions WHERE id = ANY(%(ids)s)
ORDER BY id
FOR UPDATE
"""
# Which of the batch's (session_id, event_id) pairs are stored already.
SELECT_STORED_IDS: LiteralString = """
SELECT session_id, event_id FROM events
WHERE (session_id, event_id) IN (
    SELECT * FROM unnest(%(session_ids)s::text[], %(event_ids)s::text[])
)
"""
COPY_EVENTS: LiteralString = """
COPY events (session_id, seq, event_id, app_name, user_id, type, author, invocation_id,
             agent_id, branch, content_role, content_text, data, actions, metadata)
FROM STDIN (FORMAT BINARY)
"""
COPY_TYPES = [
    "text", "int8", "text", "text", "text", "text", "text", "text",
    "text", "text", "text", "text", "jsonb", "jsonb", "jsonb",
]  # fmt: skip
# One statement for every session of the batch. State is only rewritten when a delta came:
# an untouched large state keeps its TOAST pointer.
UPDATE_SESSIONS: LiteralString = """
UPDATE sessions AS s SET
    last_seq = u.last_seq,
    event_count = s.event_count + u.appended,
    version = s.version + u.changes,
    state = CASE WHEN u.state_changed
        THEN (s.state || u.state_set) - ARRAY(SELECT jsonb_array_elements_text(u.state_remove))
        ELSE s.state END,
    events_by_type = u.events_by_type,
    events_by_author = u.events_by_author,
    events_by_role = u.events_by_role,
    text_chars = u.text_chars,
    first_event_time = COALESCE(s.first_event_time, now()),
    last_event_time = now(),
    update_time = now()
FROM unnest(
    %(ids)s::text[], %(last_seqs)s::bigint[], %(appended)s::bigint[], %(changes)s::bigint[],
    %(state_changed)s::bool[], %(state_set)s::jsonb[], %(state_remove)s::jsonb[],
    %(by_type)s::jsonb[], %(by_author)s::jsonb[], %(by_role)s::jsonb[], %(text_chars)s::bigint[]
) AS u(id, last_seq, appended, changes, state_changed, state_set, state_remove,
       events_by_type, events_by_author, events_by_role, text_chars)
WHERE s.id = u.id
RETURNING s.id, CASE WHEN u.state_changed THEN octet_length(s.state::text) ELSE 0 END
    AS state_bytes
"""
EVENT_COLUMNS: LiteralString = """
    session_id, seq, event_id, position, type, author, invocation_id, agent_id, branch,
    content_role, content_text, data, actions, metadata, create_time
"""
SELECT_LIVE: LiteralString = f"SELECT 1 FROM sessions WHERE id = %(id)s AND {LIVE}"
SELECT_SESSION_STATS: LiteralString = f"""
SELECT event_count, events_by_type, events_by_author, events_by_role, text_chars,
       first_event_time, last_event_time
FROM sessions WHERE id = %(id)s AND {LIVE}
"""


@dataclass
class AppendResult:
    """The messages of a batch that committed, in order, and the error that stopped the batch
    at the message after them (None when all committed)."""

    outcomes: list[AppendOutcome]
    failure: DomainError | None = None


class _StateTooLarge(Exception):
    """The merged state of `session_id` outgrew the limit: the batch is rolled back."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id


@dataclass
class _SessionWrite:
    """What a batch does to one session, accumulated message by message."""

    app_name: str
    user_id: str
    last_seq: int
    by_type: Counter[str]
    by_author: Counter[str]
    by_role: Counter[str]
    text_chars: int
    appended: int = 0
    changes: int = 0
    state_overlay: dict[str, Any] = field(default_factory=dict)
    stored_ids: set[str] = field(default_factory=set)


class EventRepository:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def append(self, messages: list[AppendMessage], max_state_bytes: int) -> AppendResult:
        """Write the messages in order in one transaction, up to the first that fails.

        Every event must have its `event_id` set. When a merged state would exceed
        `max_state_bytes`, the batch is retried one message per transaction so that the
        messages before the offending one still commit."""
        try:
            return await self._append_batch(messages, max_state_bytes)
        except _StateTooLarge:
            if len(messages) == 1:
                return AppendResult([], _state_too_large(max_state_bytes))
        result = AppendResult([])
        for message in messages:
            single = await self.append([message], max_state_bytes)
            result.outcomes.extend(single.outcomes)
            if single.failure is not None:
                result.failure = single.failure
                break
        return result

    async def _append_batch(
        self, messages: list[AppendMessage], max_state_bytes: int
    ) -> AppendResult:
        async with self._database.connection() as connection:
            writes = await self._lock_sessions(connection, messages)
            result, rows = _plan(messages, writes)
            if rows:
                await _copy_events(connection, rows)
                await _update_sessions(connection, writes, max_state_bytes)
        return result

    async def _lock_sessions(
        self, connection: Connection, messages: list[AppendMessage]
    ) -> dict[str, _SessionWrite | None]:
        """Lock the sessions and learn which of the batch's event ids they hold already.
        Sessions that are missing or not live map to None."""
        ids = sorted({message.session_id for message in messages})
        cursor = await connection.execute(LOCK_SESSIONS, {"ids": ids})
        writes: dict[str, _SessionWrite | None] = dict.fromkeys(ids)
        for row in await cursor.fetchall():
            if row["live"]:
                writes[row["id"]] = _SessionWrite(
                    app_name=row["app_name"],
                    user_id=row["user_id"],
                    last_seq=row["last_seq"],
                    by_type=Counter(row["events_by_type"]),
                    by_author=Counter(row["events_by_author"]),
                    by_role=Counter(row["events_by_role"]),
                    text_chars=row["text_chars"],
                )
        pairs = [
            (message.session_id, event.event_id)
            for message in messages
            if writes[message.session_id] is not None
            for event in message.events
        ]
        if pairs:
            session_ids, event_ids = (list(column) for column in zip(*pairs, strict=True))
            cursor = await connection.execute(
                SELECT_STORED_IDS, {"session_ids": session_ids, "event_ids": event_ids}
            )
            for row in await cursor.fetchall():
                write = writes[row["session_id"]]
                assert write is not None
                write.stored_ids.add(row["event_id"])
        return writes

    async def list(
        self, event_filter: EventFilter, *, after: int | None, limit: int
    ) -> list[Event]:
        """A session's events matching the filter, in seq order (or reversed), strictly after
        the cursor `after` (a seq) in that order. Raises `NotFound` unless the session is live."""
        conditions: list[sql.Composable] = [sql.SQL("session_id = %(session_id)s")]
        params: dict[str, Any] = {"session_id": event_filter.session_id, "limit": limit}
        if event_filter.after_seq:
            conditions.append(sql.SQL("seq > %(after_seq)s"))
            params["after_seq"] = event_filter.after_seq
        if event_filter.before_seq:
            conditions.append(sql.SQL("seq < %(before_seq)s"))
            params["before_seq"] = event_filter.before_seq
        if after is not None:
            cursor_condition = "seq < %(cursor)s" if event_filter.descending else "seq > %(cursor)s"
            conditions.append(sql.SQL(cursor_condition))
            params["cursor"] = after
        if event_filter.types:
            conditions.append(sql.SQL("type = ANY(%(types)s)"))
            params["types"] = event_filter.types
        for column in ("author", "agent_id", "invocation_id", "branch"):
            if value := getattr(event_filter, column):
                conditions.append(
                    sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(column))
                )
                params[column] = value
        if event_filter.start_time is not None:
            conditions.append(sql.SQL("create_time >= %(start_time)s"))
            params["start_time"] = event_filter.start_time
        if event_filter.end_time is not None:
            conditions.append(sql.SQL("create_time < %(end_time)s"))
            params["end_time"] = event_filter.end_time
        order = sql.SQL("DESC" if event_filter.descending else "ASC")
        query = sql.SQL(
            "SELECT {columns} FROM events WHERE {where} ORDER BY seq {order} LIMIT %(limit)s"
        ).format(
            columns=sql.SQL(EVENT_COLUMNS), where=sql.SQL(" AND ").join(conditions), order=order
        )
        async with self._database.connection() as connection:
            live = await connection.execute(SELECT_LIVE, {"id": event_filter.session_id})
            if await live.fetchone() is None:
                raise session_not_found(event_filter.session_id)
            cursor = await connection.execute(query, params)
            rows = await cursor.fetchall()
        return [event_from_row(row) for row in rows]

    async def session_stats(self, session_id: str) -> SessionStats:
        async with self._database.connection() as connection:
            cursor = await connection.execute(SELECT_SESSION_STATS, {"id": session_id})
            row = await cursor.fetchone()
        if row is None:
            raise session_not_found(session_id)
        return SessionStats(
            event_count=row["event_count"],
            events_by_type=row["events_by_type"],
            events_by_author=row["events_by_author"],
            events_by_role=row["events_by_role"],
            text_chars=row["text_chars"],
            first_event_time=row["first_event_time"],
            last_event_time=row["last_event_time"],
        )


def _plan(
    messages: list[AppendMessage], writes: dict[str, _SessionWrite | None]
) -> tuple[AppendResult, list[tuple[Any, ...]]]:
    """Decide, message by message, what gets written: the rows to copy and each session's
    new counters. Stops at the first message that cannot be written."""
    result = AppendResult([])
    rows: list[tuple[Any, ...]] = []
    for message in messages:
        write = writes[message.session_id]
        if write is None:
            result.failure = session_not_found(message.session_id)
            break
        fresh = []
        for event in message.events:
            if event.event_id not in write.stored_ids:
                write.stored_ids.add(event.event_id)
                fresh.append(event)
        expected = message.expected_last_seq
        if fresh and expected is not None and expected != write.last_seq:
            result.failure = ExpectationFailed(
                f"session {message.session_id!r} is at last_seq {write.last_seq}, "
                f"not {expected}; nothing of this message was written",
                reason="LAST_SEQ_MISMATCH",
                metadata={"session_id": message.session_id, "last_seq": str(write.last_seq)},
            )
            break
        for event in fresh:
            write.last_seq += 1
            role, text = (event.content.role, event.content.text) if event.content else ("", "")
            state_delta = event.actions.state_delta if event.actions else None
            rows.append((
                message.session_id, write.last_seq, event.event_id, write.app_name,
                write.user_id, event.type, event.author, event.invocation_id, event.agent_id,
                event.branch, role, text,
                Jsonb(event.data) if event.data is not None else None,
                Jsonb({"state_delta": state_delta}) if state_delta else None,
                Jsonb(event.metadata) if event.metadata is not None else None,
            ))  # fmt: skip
            write.by_type[event.type] += 1
            write.by_author[event.author] += 1
            if event.content is not None:
                write.by_role[role] += 1
            write.text_chars += len(text)
            if state_delta:
                write.state_overlay.update(state_delta)
        if fresh:
            write.appended += len(fresh)
            write.changes += 1
        result.outcomes.append(
            AppendOutcome(
                session_id=message.session_id,
                appended=len(fresh),
                duplicates=len(message.events) - len(fresh),
                last_seq=write.last_seq,
            )
        )
    return result, rows


async def _copy_events(connection: Connection, rows: list[tuple[Any, ...]]) -> None:
    async with connection.cursor().copy(COPY_EVENTS) as copy:
        copy.set_types(COPY_TYPES)
        for row in rows:
            await copy.write_row(row)


async def _update_sessions(
    connection: Connection, writes: dict[str, _SessionWrite | None], max_state_bytes: int
) -> None:
    changed = {sid: write for sid, write in writes.items() if write is not None and write.appended}
    params: dict[str, list[Any]] = {
        "ids": list(changed),
        "last_seqs": [w.last_seq for w in changed.values()],
        "appended": [w.appended for w in changed.values()],
        "changes": [w.changes for w in changed.values()],
        "state_changed": [bool(w.state_overlay) for w in changed.values()],
        "state_set": [
            Jsonb({k: v for k, v in w.state_overlay.items() if v is not None})
            for w in changed.values()
        ],
        "state_remove": [
            Jsonb([k for k, v in w.state_overlay.items() if v is None]) for w in changed.values()
        ],
        "by_type": [Jsonb(w.by_type) for w in changed.values()],
        "by_author": [Jsonb(w.by_author) for w in changed.values()],
        "by_role": [Jsonb(w.by_role) for w in changed.values()],
        "text_chars": [w.text_chars for w in changed.values()],
    }
    cursor = await connection.execute(UPDATE_SESSIONS, params)
    for row in await cursor.fetchall():
        if row["state_bytes"] > max_state_bytes:
            raise _StateTooLarge(row["id"])


def _state_too_large(max_state_bytes: int) -> InvalidArgument:
    return InvalidArgument.of(
        "events.actions.state_delta",
        f"merging the state deltas would make the session state exceed {max_state_bytes} bytes",
    )


def event_from_row(row: dict[str, Any]) -> Event:
    actions = row["actions"]
    return Event(
        session_id=row["session_id"],
        seq=row["seq"],
        event_id=row["event_id"],
        position=row["position"],
        type=row["type"],
        author=row["author"],
        invocation_id=row["invocation_id"],
        agent_id=row["agent_id"],
        branch=row["branch"],
        content_role=row["content_role"],
        content_text=row["content_text"],
        data=row["data"],
        state_delta=actions.get("state_delta") if actions else None,
        metadata=row["metadata"],
        create_time=row["create_time"],
    )
