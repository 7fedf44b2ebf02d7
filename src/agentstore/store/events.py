"""EventRepository: appends, reads and per-session counters of the event log.

An append takes the rows of the sessions it writes to `FOR UPDATE`, in id order so that two
transactions never wait on each other in a cycle. That row lock is what makes `seq` gapless
and in commit order per session, and it costs nothing across sessions."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, LiteralString, TypeVar

from agentstore.domain.callers import Scope
from agentstore.domain.errors import (
    DomainError,
    ExpectationFailed,
    InvalidArgument,
    session_not_found,
)
from agentstore.domain.events import (
    AppendMessage,
    AppendOutcome,
    Event,
    EventFilter,
    FeedPosition,
    FeedScope,
    HistoryRead,
    NewEvent,
    Removal,
    RemovalOutcome,
    SessionStats,
)
from agentstore.domain.limits import Limits
from agentstore.store.database import Connection, Database, fetch_tuples
from agentstore.store.errors import EventIdTaken, StoreNotReady
from agentstore.store.queries import query

__all__ = ["AppendResult", "EventRepository", "event_from_row"]

# Each retry follows another writer's commit of the same event ids; more than a couple is
# vanishingly rare.
APPEND_ATTEMPTS = 10

# The append statement, in two variants: whether the batch carries state deltas decides
# which part goes in place of {state_changes} (see append_events in queries/events.sql).
APPEND_EVENTS = query(
    "events", "append_events", state_changes=query("events", "append_state_changes")
)
APPEND_EVENTS_WITHOUT_DELTAS = query(
    "events", "append_events", state_changes=query("events", "append_no_state_changes")
)
SELECT_LIVE_SESSION = query("events", "select_live_session")
# The event reads, with their columns in place (event_read_columns).
EVENT_READ_COLUMNS = query("events", "event_read_columns")
LIST_EVENTS_ASCENDING = query(
    "events", "list_events", event_read_columns=EVENT_READ_COLUMNS, direction="ASC", beyond=">"
)
LIST_EVENTS_DESCENDING = query(
    "events", "list_events", event_read_columns=EVENT_READ_COLUMNS, direction="DESC", beyond="<"
)
READ_AFTER = query("events", "read_after", event_read_columns=EVENT_READ_COLUMNS)
READ_FEED = query("events", "read_feed", event_read_columns=EVENT_READ_COLUMNS)
READ_HISTORY = query("events", "read_history", event_read_columns=EVENT_READ_COLUMNS)
SELECT_FOREIGN_TX_ID = query("events", "select_foreign_tx_id")
SELECT_SESSION_STATS = query("events", "select_session_stats")
LOCK_SESSION_FOR_REMOVAL = query("events", "lock_session_for_removal")
REMOVE_EVENTS = query("events", "remove_events")
SELECT_CHANGED_SESSIONS = query("events", "select_changed_sessions")
# The deltas an event's actions may carry, as named in the proto and in events.actions.
ACTION_DELTAS = ("state_delta", "app_state_delta", "user_state_delta")
# The columns every event read selects first (queries/events.sql), and where a query's own
# extra columns start in its tuple rows.
EVENT_COLUMNS = 16
RowT = TypeVar("RowT")


@dataclass
class AppendResult:
    """The messages of a batch that committed, in order, and the error that stopped the batch
    at the message after them (None when all committed)."""

    outcomes: list[AppendOutcome]
    failure: DomainError | None = None


class EventRepository:
    def __init__(self, database: Database, limits: Limits) -> None:
        self._database = database
        self._limits = limits

    async def append(self, scope: Scope, messages: list[AppendMessage]) -> AppendResult:
        """Write the messages in order in one transaction, up to the first that cannot be
        written (see append_events in queries/events.sql); a session outside `scope` is not
        found. Every event must have its `event_id` set."""
        try:
            rows = await self._append_retrying(scope, messages)
        except InvalidArgument as exc:
            # A merged state would pass the limit, and the statement wrote nothing.
            if len(messages) == 1:
                return AppendResult([], exc)
            return await self._append_one_by_one(scope, messages)
        result = AppendResult([])
        for row in rows:
            if row["failure"] is not None:
                result.failure = _failure(row["failure"], row["session_id"], row["last_seq"])
                break
            result.outcomes.append(
                AppendOutcome(
                    session_id=row["session_id"],
                    app_name=row["app_name"],
                    appended=row["appended"],
                    duplicates=row["duplicates"],
                    last_seq=row["last_seq"],
                    version=row["version"],
                    seqs=row["seqs"],
                )
            )
        return result

    async def _append_retrying(
        self, scope: Scope, messages: list[AppendMessage]
    ) -> list[dict[str, Any]]:
        for attempt in range(APPEND_ATTEMPTS):
            try:
                return await self._append_once(scope, messages)
            except EventIdTaken:
                # Another writer stored one of these event ids while this append waited for
                # the session lock: a new statement sees it and counts it as a duplicate.
                if attempt == APPEND_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def _append_once(
        self, scope: Scope, messages: list[AppendMessage]
    ) -> list[dict[str, Any]]:
        header: list[dict[str, Any]] = []
        rows: list[str] = []
        encodings: list[bytes | None] = []
        number = 0
        carries_deltas = False
        for index, message in enumerate(messages, start=1):
            header.append(
                {
                    "message": index,
                    "session_id": message.session_id,
                    "expected_last_seq": message.expected_last_seq,
                    "event_total": len(message.events),
                }
            )
            for event in message.events:
                number += 1
                deltas = _action_deltas(event)
                carries_deltas = carries_deltas or bool(deltas)
                rows.append(_event_json(index, number, event, deltas))
                encodings.append(event.encoded)
        params = {
            "apps": scope.app_names,
            "messages": _SCALARS_JSON.encode(header),
            "events": "[" + ",".join(rows) + "]",
            "encodings": encodings,
            "max_state_bytes": self._limits.max_state_bytes,
        }
        async with self._database.connection() as connection:
            statement = APPEND_EVENTS if carries_deltas else APPEND_EVENTS_WITHOUT_DELTAS
            cursor = await connection.execute(statement, params)
            return await cursor.fetchall()

    async def _append_one_by_one(self, scope: Scope, messages: list[AppendMessage]) -> AppendResult:
        result = AppendResult([])
        for message in messages:
            single = await self.append(scope, [message])
            result.outcomes.extend(single.outcomes)
            if single.failure is not None:
                result.failure = single.failure
                break
        return result

    async def list_events(
        self, scope: Scope, event_filter: EventFilter, *, after: int | None, limit: int
    ) -> list[Event]:
        """A session's events matching the filter, in seq order (or reversed), strictly after
        the cursor `after` (a seq) in that order. Raises `NotFound` unless the session is live."""
        params = {
            "apps": scope.app_names,
            "session_id": event_filter.session_id,
            "after_seq": event_filter.after_seq,
            "before_seq": event_filter.before_seq,
            "cursor": after,
            "types": event_filter.types,
            "author": event_filter.author,
            "agent_id": event_filter.agent_id,
            "invocation_id": event_filter.invocation_id,
            "branch": event_filter.branch,
            "start_time": event_filter.start_time,
            "end_time": event_filter.end_time,
            "limit": limit,
        }
        statement = LIST_EVENTS_DESCENDING if event_filter.descending else LIST_EVENTS_ASCENDING
        async with self._database.connection() as connection:
            # Unprepared: see list_events in queries/events.sql.
            events = await _fetch(connection, statement, params, _event_of_columns, prepare=False)
            if not events:
                live = await connection.execute(
                    SELECT_LIVE_SESSION, {"apps": scope.app_names, "id": event_filter.session_id}
                )
                if await live.fetchone() is None:
                    raise session_not_found(event_filter.session_id)
            return events

    async def read_after(
        self, scope: Scope, session_id: str, after_seq: int, limit: int
    ) -> list[Event]:
        """Up to `limit` events of a session with seq > `after_seq`, in order."""
        params = {
            "apps": scope.app_names,
            "session_id": session_id,
            "after_seq": after_seq,
            "limit": limit,
        }
        async with self._database.connection() as connection:
            return await _fetch(connection, READ_AFTER, params, _event_of_columns)

    async def read_feed(
        self, scope: Scope, feed: FeedScope, after: FeedPosition, limit: int
    ) -> list[tuple[FeedPosition, Event]]:
        """Up to `limit` events of the feed after `after`, in commit order, each with its
        feed position."""
        params = {
            "apps": scope.app_names,
            "app_name": feed.app_name,
            "user_id": feed.user_id,
            "agent_id": feed.agent_id,
            "after_tx": str(after[0]),
            "after_position": after[1],
            "limit": limit,
        }
        async with self._database.connection() as connection:
            return await _fetch(connection, READ_FEED, params, _feed_row)

    async def remove(
        self, scope: Scope, removal: Removal, *, notice_type: str, notice_event_id: str
    ) -> RemovalOutcome:
        """Take events back and append the notice (see remove_events in queries/events.sql).
        Raises `NotFound` for a session that is not live, `ExpectationFailed` when
        `expected_last_seq` does not hold."""
        params = {
            "apps": scope.app_names,
            "session_id": removal.session_id,
            "mode": removal.mode,
            "first": removal.first,
            "last": removal.last,
            "invocation_id": removal.invocation_id,
            "expected_last_seq": removal.expected_last_seq,
            "notice_type": notice_type,
            "notice_event_id": notice_event_id,
        }
        async with (
            self._database.connection(session_id=removal.session_id) as connection,
            connection.transaction(),
        ):
            await connection.execute(LOCK_SESSION_FOR_REMOVAL, params)
            rows = await fetch_tuples(connection, REMOVE_EVENTS, params)
        if not rows:
            raise session_not_found(removal.session_id)
        row = rows[0]
        app_name, live, allowed, last_seq, version, notice_seq, count, ranges = row[EVENT_COLUMNS:]
        if not live:
            raise session_not_found(removal.session_id)
        if not allowed:
            raise _failure("last_seq_mismatch", removal.session_id, last_seq)
        return RemovalOutcome(
            app_name=app_name,
            ranges=[(first, last) for first, last in ranges or []],
            count=count,
            removed=event_from_row(row) if row[0] is not None else None,
            notice_seq=notice_seq or 0,
            last_seq=last_seq,
            version=version,
        )

    async def changed_since(self, watermark: str | None) -> tuple[list[tuple[str, str]], str]:
        """(app_name, session_id) of the sessions with events committed since `watermark`
        (none for None), and the watermark to pass next time (see select_changed_sessions)."""
        async with self._database.connection() as connection:
            cursor = await connection.execute(SELECT_CHANGED_SESSIONS, {"since": watermark})
            row = await cursor.fetchone()
        assert row is not None
        return [(app, session) for app, session in row["changed"]], row["watermark"]

    async def check_transaction_ids(self) -> None:
        """Raises `StoreNotReady` when events carry transaction ids from another cluster (see
        select_foreign_tx_id): feeds and search would hide them."""
        async with self._database.connection() as connection:
            cursor = await connection.execute(SELECT_FOREIGN_TX_ID)
            row = await cursor.fetchone()
        if row is not None:
            raise StoreNotReady(
                f"the events table holds transaction ids from another PostgreSQL cluster (up to"
                f" {row['newest']}; this one is at {row['next']}), as after restoring a logical"
                " dump: feeds and search would hide those events. Reset them with"
                " `UPDATE events SET tx_id = '3'` (docs/operations.md, 'Moving the database')"
                " and start again"
            )

    async def read_history(
        self, scope: Scope, session_id: str, after_seq: int, limit: int
    ) -> HistoryRead:
        """Up to `limit` events of a session after `after_seq`, in order, with its
        removed_count and last_seq, in one snapshot. Raises `NotFound` unless the session is
        live and in scope."""
        params = {"apps": scope.app_names, "id": session_id, "after_seq": after_seq, "limit": limit}
        async with self._database.connection() as connection:
            rows = await _fetch(connection, READ_HISTORY, params, tuple)
        if not rows:
            raise session_not_found(session_id)
        removed_count, last_seq = rows[0][EVENT_COLUMNS:]
        # Without an event after `after_seq`, the one row has none (its seq is null).
        events = [_event_of_columns(row[:EVENT_COLUMNS]) for row in rows if row[1] is not None]
        return HistoryRead(events, removed_count, last_seq)

    async def session_stats(self, scope: Scope, session_id: str) -> SessionStats:
        params = {"apps": scope.app_names, "id": session_id}
        async with self._database.connection() as connection:
            cursor = await connection.execute(SELECT_SESSION_STATS, params)
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


# Built once: json.dumps with options builds a new encoder on every call, here per event.
_SCALARS_JSON = json.JSONEncoder(ensure_ascii=False)


def _action_deltas(event: NewEvent) -> list[str]:
    """The deltas of an event's actions as members of its `actions` JSON object; none when
    it changes no state."""
    if event.actions is None:
        return []
    return [
        f'"{name}":{delta.encoded}'
        for name in ACTION_DELTAS
        if (delta := getattr(event.actions, name))
    ]


def _event_json(message: int, number: int, event: NewEvent, deltas: list[str]) -> str:
    """One event as an object of append_events' `events` parameter, with its `deltas`
    (_action_deltas). Its JSON documents were encoded by validation and are spliced in as
    they are; absent ones are left out (null)."""
    scalars = _SCALARS_JSON.encode(
        {
            "message": message,
            "number": number,
            "event_id": event.event_id,
            "type": event.type,
            "author": event.author,
            "invocation_id": event.invocation_id,
            "agent_id": event.agent_id,
            "branch": event.branch,
            "content_role": event.content.role if event.content is not None else None,
            "content_text": event.content.text if event.content is not None else "",
            "create_time": (
                event.create_time.isoformat() if event.create_time is not None else None
            ),
        }
    )
    documents = [scalars[:-1]]
    if event.data is not None:
        documents.append(f',"data":{event.data.encoded}')
    if deltas:
        documents.append(f',"actions":{{{",".join(deltas)}}}')
    if event.metadata is not None:
        documents.append(f',"metadata":{event.metadata.encoded}')
    documents.append("}")
    return "".join(documents)


def _failure(kind: str, session_id: str, last_seq: int) -> DomainError:
    if kind == "session_not_found":
        return session_not_found(session_id)
    return ExpectationFailed(
        f"session {session_id!r} is at last_seq {last_seq}; nothing of this message was written",
        reason="LAST_SEQ_MISMATCH",
        metadata={"session_id": session_id, "last_seq": str(last_seq)},
    )


async def _fetch(
    connection: Connection,
    statement: LiteralString,
    params: dict[str, Any],
    make: Callable[[Sequence[Any]], RowT],
    *,
    prepare: bool | None = None,
) -> list[RowT]:
    """The hot reads: rows in PostgreSQL's binary format (a kept encoding arrives as it is,
    not in hex; numbers and times need no parsing), each made by `make(columns)` as it is
    read."""
    cursor = connection.cursor(row_factory=lambda _: make, binary=True)
    await cursor.execute(statement, params, prepare=prepare)
    return await cursor.fetchall()


# An Event straight from a row's columns, in C (a named tuple's own constructor is Python:
# a tenth of a replay's time).
_event_of_columns: Callable[[Sequence[Any]], Event] = functools.partial(tuple.__new__, Event)


def _feed_row(columns: Sequence[Any]) -> tuple[FeedPosition, Event]:
    event = event_from_row(columns)
    return (int(columns[EVENT_COLUMNS]), event.position), event  # tx_id, position


def event_from_row(row: Sequence[Any]) -> Event:
    """The event of a tuple row that starts with the event columns (queries/events.sql)."""
    return Event(*row[:EVENT_COLUMNS])
