"""EventRepository: appends, reads and per-session counters of the event log.

An append takes the rows of the sessions it writes to `FOR UPDATE`, in id order so that two
transactions never wait on each other in a cycle. That row lock is what makes `seq` gapless
and in commit order per session, and it costs nothing across sessions."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, LiteralString

from psycopg import sql

from agentstore.domain.errors import DomainError, ExpectationFailed, InvalidArgument
from agentstore.domain.events import (
    AppendMessage,
    AppendOutcome,
    Event,
    EventFilter,
    NewEvent,
    SessionStats,
)
from agentstore.store.database import Database
from agentstore.store.sessions import LIVE, session_not_found

__all__ = ["AppendResult", "EventRepository"]

LOCK_SESSIONS: LiteralString = f"""
SELECT id, app_name, user_id, last_seq, ({LIVE}) AS live,
       events_by_type, events_by_author, events_by_role, text_chars
FROM sessions WHERE id = ANY(%(ids)s)
ORDER BY id
FOR UPDATE
"""
# Which of the batch's [session_id, event_id] pairs are stored already. It runs after
# LOCK_SESSIONS, so its snapshot sees every event committed before the locks were granted.
SELECT_STORED_IDS: LiteralString = """
SELECT session_id, event_id FROM events
WHERE (session_id, event_id) IN (
    SELECT pair->>0, pair->>1 FROM jsonb_array_elements(%(pairs)s::jsonb) AS pair
)
"""
# The whole write in one statement. Events travel as one JSON array of rows [session_id,
# seq, event_id, app_name, user_id, type, author, invocation_id, agent_id, branch, role,
# text, data, actions, metadata] (one parameter instead of a column array each, unpacked by
# PostgreSQL in C; data, actions and metadata are spliced in from their validated
# encodings); sessions as JSON records of their new counters. State is only rewritten where
# a delta came: an untouched large state keeps its TOAST pointer.
WRITE_BATCH: LiteralString = """
WITH inserted AS (
    INSERT INTO events (session_id, seq, event_id, app_name, user_id, type, author,
                        invocation_id, agent_id, branch, content_role, content_text, data,
                        actions, metadata)
    SELECT r->>0, (r->>1)::bigint, r->>2, r->>3, r->>4, r->>5, r->>6, r->>7, r->>8, r->>9,
           r->>10, r->>11, NULLIF(r->12, 'null'::jsonb), NULLIF(r->13, 'null'::jsonb),
           NULLIF(r->14, 'null'::jsonb)
    FROM jsonb_array_elements(%(events)s::jsonb) AS r
)
UPDATE sessions AS s SET
    last_seq = u.last_seq,
    event_count = s.event_count + u.appended,
    version = s.version + u.changes,
    state = CASE WHEN u.state_set IS NULL THEN s.state
        ELSE (s.state || u.state_set) - ARRAY(SELECT jsonb_array_elements_text(u.state_remove))
        END,
    events_by_type = u.events_by_type,
    events_by_author = u.events_by_author,
    events_by_role = u.events_by_role,
    text_chars = u.text_chars,
    first_event_time = COALESCE(s.first_event_time, now()),
    last_event_time = now(),
    update_time = now()
FROM jsonb_to_recordset(%(sessions)s::jsonb) AS u(
    id text, last_seq bigint, appended bigint, changes bigint, state_set jsonb,
    state_remove jsonb, events_by_type jsonb, events_by_author jsonb, events_by_role jsonb,
    text_chars bigint)
WHERE s.id = u.id
RETURNING s.id,
    CASE WHEN u.state_set IS NULL THEN 0 ELSE octet_length(s.state::text) END AS state_bytes
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
    """A merged state outgrew the limit: the batch is rolled back."""


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
        """Write the messages in order in one transaction, up to the first that cannot be
        written. Every event must have its `event_id` set.

        The sessions' rows are locked FOR UPDATE, in id order so that two batches never wait
        on each other in a cycle: that lock makes seq gapless and in commit order per session
        and costs nothing across sessions. When a merged state would exceed
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
        # Two round trips: (BEGIN, lock, look up stored ids), then (write, COMMIT); a third
        # only when some message changed state, to check the merged sizes before COMMIT.
        ids = sorted({message.session_id for message in messages})
        pairs = [[m.session_id, event.event_id] for m in messages for event in m.events]
        async with (
            self._database.connection() as connection,
            connection.pipeline(),
            connection.transaction(),
        ):
            locked = await connection.execute(LOCK_SESSIONS, {"ids": ids})
            stored = await connection.execute(SELECT_STORED_IDS, {"pairs": json.dumps(pairs)})
            writes = _writes(ids, await locked.fetchall())
            for row in await stored.fetchall():
                if (write := writes[row["session_id"]]) is not None:
                    write.stored_ids.add(row["event_id"])
            result, rows = _plan(messages, writes)
            if rows:
                changed = _changed_sessions(writes)
                params = {"events": "[" + ",".join(rows) + "]", "sessions": json.dumps(changed)}
                written = await connection.execute(WRITE_BATCH, params)
                if any(session["state_set"] is not None for session in changed):
                    for row in await written.fetchall():
                        if row["state_bytes"] > max_state_bytes:
                            raise _StateTooLarge
        return result

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


def _writes(ids: list[str], rows: list[dict[str, Any]]) -> dict[str, _SessionWrite | None]:
    """What each locked session starts from; None for sessions missing or not live."""
    writes: dict[str, _SessionWrite | None] = dict.fromkeys(ids)
    for row in rows:
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
    return writes


def _plan(
    messages: list[AppendMessage], writes: dict[str, _SessionWrite | None]
) -> tuple[AppendResult, list[str]]:
    """Decide, message by message, what gets written: the new events as JSON rows and each
    session's new counters. Stops at the first message that cannot be written. Events whose
    id the session holds (or that repeat an id of the batch) are duplicates; the expected
    last_seq is only checked for a message that has something new, so resending a committed
    message is harmless."""
    result = AppendResult([])
    rows: list[str] = []
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
            rows.append(_event_row(message.session_id, write, event))
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


def _event_row(session_id: str, write: _SessionWrite, event: NewEvent) -> str:
    """One event as a JSON row for WRITE_BATCH; also counts it into its session."""
    role, text = (event.content.role, event.content.text) if event.content else ("", "")
    scalars = json.dumps(
        [session_id, write.last_seq, event.event_id, write.app_name, write.user_id, event.type,
         event.author, event.invocation_id, event.agent_id, event.branch, role, text],
        ensure_ascii=False,
    )  # fmt: skip
    state_delta = event.actions.state_delta if event.actions is not None else None
    data = event.data.encoded if event.data is not None else "null"
    actions = f'{{"state_delta":{state_delta.encoded}}}' if state_delta else "null"
    metadata = event.metadata.encoded if event.metadata is not None else "null"
    write.by_type[event.type] += 1
    write.by_author[event.author] += 1
    if event.content is not None:
        write.by_role[role] += 1
    write.text_chars += len(text)
    if state_delta:
        write.state_overlay.update(state_delta.value)
    return f"{scalars[:-1]},{data},{actions},{metadata}]"


def _changed_sessions(writes: dict[str, _SessionWrite | None]) -> list[dict[str, Any]]:
    """The new counters of every session the batch appends to, for WRITE_BATCH."""
    return [
        {
            "id": session_id,
            "last_seq": write.last_seq,
            "appended": write.appended,
            "changes": write.changes,
            "state_set": (
                {k: v for k, v in write.state_overlay.items() if v is not None}
                if write.state_overlay
                else None
            ),
            "state_remove": [k for k, v in write.state_overlay.items() if v is None],
            "events_by_type": write.by_type,
            "events_by_author": write.by_author,
            "events_by_role": write.by_role,
            "text_chars": write.text_chars,
        }
        for session_id, write in writes.items()
        if write is not None and write.appended
    ]


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
