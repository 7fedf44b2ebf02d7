"""EventRepository: appends, reads and per-session counters of the event log.

An append takes the rows of the sessions it writes to `FOR UPDATE`, in id order so that two
transactions never wait on each other in a cycle. That row lock is what makes `seq` gapless
and in commit order per session, and it costs nothing across sessions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, LiteralString

import psycopg
from psycopg import sql

from agentstore.domain.errors import DomainError, ExpectationFailed, InvalidArgument
from agentstore.domain.events import (
    AppendMessage,
    AppendOutcome,
    Event,
    EventFilter,
    FeedPosition,
    FeedScope,
    NewEvent,
    SessionStats,
)
from agentstore.store.database import Database, fetch_tuples
from agentstore.store.sessions import LIVE, session_not_found

__all__ = ["AppendResult", "EventRepository"]

# Each retry follows another writer's commit of the same event ids; more than a couple is
# vanishingly rare.
APPEND_ATTEMPTS = 10


def _plus_counts(counts: LiteralString, more: LiteralString) -> LiteralString:
    """SQL for the sum of two {"key": count} objects. Written out rather than calling the
    schema's add_counts(): PostgreSQL plans a SQL function's body again in every statement
    that calls it, which was a sixth of the time of a one-event append."""
    return f"""(
            SELECT COALESCE(jsonb_object_agg(key, n), '{{}}'::jsonb)
            FROM (SELECT key, sum(value::bigint) AS n
                  FROM (SELECT * FROM jsonb_each_text({counts})
                        UNION ALL SELECT * FROM jsonb_each_text({more})) AS both_counts
                  GROUP BY key) AS sums)"""


# An append is one statement, so that it costs one round trip and one transaction (the
# pool runs in autocommit). Its input is two JSON parameters spliced together from the
# encodings validation made:
#   messages: [[session_id, expected_last_seq or null, number of events], ...]
#   events:   [[message number (from 1), event_id, type, author, invocation_id, agent_id,
#               branch, role or null when there is no content, text, data, actions,
#               metadata], ...]
# It returns one row per message up to and including the first that cannot be written, which
# carries the failure; every message before it is written, it and those after it are not.
#
# - The sessions' rows are locked FOR UPDATE in id order, so two appends never wait on each
#   other in a cycle. The lock makes seq gapless and in commit order per session and costs
#   nothing across sessions; `locked` holds the rows as of the lock (the latest versions).
# - An event is new unless its session holds its id already or an earlier event of the batch
#   has the same id. The lookup uses the statement's snapshot: an event committed by another
#   writer while this one waited for the lock is missed, and the insert then fails on
#   events_session_event_id_key; the repository retries, with a new snapshot.
# - expected_last_seq is checked only for a message that has something new, so resending a
#   committed message is harmless.
# - State deltas fold into one overlay per session (the last value of each key wins; null
#   removes the key). When a merged state would pass the limit, nothing is written and every
#   row says so: the repository then retries message by message to find the culprit.
APPEND: LiteralString = f"""
WITH msg AS (
    SELECT ord::int AS m, x->>0 AS session_id, (x->>1)::bigint AS expected,
           (x->>2)::int AS total
    FROM jsonb_array_elements(%(messages)s::jsonb) WITH ORDINALITY AS t(x, ord)
), locked AS (
    SELECT id, app_name, user_id, last_seq, state, ({LIVE}) AS live
    FROM sessions WHERE id IN (SELECT session_id FROM msg)
    ORDER BY id
    FOR UPDATE
), ev AS (
    SELECT (e->>0)::int AS m, k, e
    FROM jsonb_array_elements(%(events)s::jsonb) WITH ORDINALITY AS t(e, k)
), flagged AS (
    SELECT ev.m, ev.k, ev.e, msg.session_id,
           row_number() OVER (PARTITION BY msg.session_id, ev.e->>1 ORDER BY ev.m, ev.k) = 1
           AND NOT EXISTS (
               SELECT 1 FROM events AS stored
               WHERE stored.session_id = msg.session_id AND stored.event_id = ev.e->>1
           ) AS fresh
    FROM ev JOIN msg USING (m)
), counted AS (
    SELECT msg.m, msg.session_id, msg.expected, msg.total, locked.app_name, locked.live,
           locked.last_seq, COALESCE(fresh.n, 0) AS fresh_count
    FROM msg
    LEFT JOIN locked ON locked.id = msg.session_id
    LEFT JOIN (SELECT m, count(*)::int AS n FROM flagged WHERE fresh GROUP BY m) AS fresh
        USING (m)
), before AS (
    SELECT counted.*,
           last_seq + COALESCE(sum(fresh_count) OVER (
               PARTITION BY session_id ORDER BY m
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS seq_before
    FROM counted
), judged AS (
    SELECT m, session_id, app_name, total, fresh_count, seq_before,
           CASE
               WHEN live IS NOT TRUE THEN 'session_not_found'
               WHEN fresh_count > 0 AND expected IS NOT NULL AND expected <> seq_before
                   THEN 'last_seq_mismatch'
           END AS failure
    FROM before
), cutoff AS (
    SELECT COALESCE(min(m) FILTER (WHERE failure IS NOT NULL), 2147483647) AS m FROM judged
), kept AS (
    SELECT flagged.session_id, flagged.m, flagged.k, flagged.e, locked.app_name,
           locked.user_id,
           locked.last_seq + row_number() OVER (
               PARTITION BY flagged.session_id ORDER BY flagged.m, flagged.k) AS seq
    FROM flagged JOIN locked ON locked.id = flagged.session_id
    WHERE flagged.fresh AND flagged.m < (SELECT m FROM cutoff)
), last_delta AS (
    SELECT DISTINCT ON (kept.session_id, delta.key) kept.session_id, delta.key, delta.value
    FROM kept, jsonb_each(kept.e->10->'state_delta') AS delta
    WHERE jsonb_typeof(kept.e->10->'state_delta') = 'object'
    ORDER BY kept.session_id, delta.key, kept.seq DESC
), new_state AS (
    SELECT locked.id,
           (locked.state || COALESCE(
                jsonb_object_agg(key, value) FILTER (WHERE value <> 'null'::jsonb), '{{}}'))
           - COALESCE(array_agg(key) FILTER (WHERE value = 'null'::jsonb), '{{}}')
               AS state
    FROM last_delta JOIN locked ON locked.id = last_delta.session_id
    GROUP BY locked.id, locked.state
), too_large AS (
    SELECT EXISTS (
        SELECT 1 FROM new_state WHERE octet_length(state::text) > %(max_state_bytes)s
    ) AS yes
), inserted AS (
    INSERT INTO events (session_id, seq, event_id, app_name, user_id, type, author,
                        invocation_id, agent_id, branch, content_role, content_text, data,
                        actions, metadata)
    SELECT session_id, seq, e->>1, app_name, user_id, e->>2, e->>3, e->>4, e->>5, e->>6,
           COALESCE(e->>7, ''), e->>8, NULLIF(e->9, 'null'::jsonb),
           NULLIF(e->10, 'null'::jsonb), NULLIF(e->11, 'null'::jsonb)
    FROM kept
    WHERE NOT (SELECT yes FROM too_large)
), counts AS (
    SELECT session_id, count(*) AS appended, count(DISTINCT m) AS changes,
           sum(length(e->>8)) AS text_chars
    FROM kept GROUP BY session_id
), by_type AS (
    SELECT session_id, jsonb_object_agg(key, n) AS counts
    FROM (SELECT session_id, e->>2 AS key, count(*) AS n FROM kept GROUP BY 1, 2) AS c
    GROUP BY session_id
), by_author AS (
    SELECT session_id, jsonb_object_agg(key, n) AS counts
    FROM (SELECT session_id, e->>3 AS key, count(*) AS n FROM kept GROUP BY 1, 2) AS c
    GROUP BY session_id
), by_role AS (
    SELECT session_id, jsonb_object_agg(key, n) AS counts
    FROM (SELECT session_id, e->>7 AS key, count(*) AS n FROM kept
          WHERE e->>7 IS NOT NULL GROUP BY 1, 2) AS c
    GROUP BY session_id
), updated AS (
    UPDATE sessions AS s SET
        last_seq = s.last_seq + counts.appended,
        event_count = s.event_count + counts.appended,
        version = s.version + counts.changes,
        state = COALESCE(new_state.state, s.state),
        events_by_type = {_plus_counts("s.events_by_type", "by_type.counts")},
        events_by_author = {_plus_counts("s.events_by_author", "by_author.counts")},
        events_by_role = {_plus_counts("s.events_by_role", "by_role.counts")},  -- NULL: none
        text_chars = s.text_chars + counts.text_chars,
        first_event_time = COALESCE(s.first_event_time, now()),
        last_event_time = now(),
        update_time = now()
    FROM counts
    JOIN by_type USING (session_id)
    JOIN by_author USING (session_id)
    LEFT JOIN by_role USING (session_id)
    LEFT JOIN new_state ON new_state.id = counts.session_id
    WHERE s.id = counts.session_id AND NOT (SELECT yes FROM too_large)
)
SELECT judged.m, judged.session_id, judged.app_name, judged.fresh_count AS appended,
       judged.total - judged.fresh_count AS duplicates,
       CASE WHEN judged.failure IS NULL THEN judged.seq_before + judged.fresh_count
            ELSE judged.seq_before END AS last_seq,
       judged.failure,
       (SELECT yes FROM too_large) AS state_too_large
FROM judged
WHERE judged.m <= (SELECT m FROM cutoff)
ORDER BY judged.m
"""
EVENT_COLUMNS: LiteralString = """
    session_id, seq, event_id, position, type, author, invocation_id, agent_id, branch,
    content_role, content_text, data, actions, metadata, create_time
"""
# Where the columns a query selects after EVENT_COLUMNS start in its tuple rows.
AFTER_EVENT_COLUMNS = 15
SELECT_LIVE: LiteralString = f"SELECT 1 FROM sessions WHERE id = %(id)s AND {LIVE}"
READ_AFTER: LiteralString = f"""
SELECT {EVENT_COLUMNS} FROM events
WHERE session_id = %(session_id)s AND seq > %(after_seq)s
ORDER BY seq LIMIT %(limit)s
"""
# The feed of an app: events in (tx_id, position) order, only from transactions older than
# every one still running, so a transaction that took an earlier position but commits later
# is never skipped: its events only become readable once nothing before them is pending.
READ_FEED: LiteralString = f"""
SELECT {EVENT_COLUMNS}, tx_id::text AS tx_id
FROM events
WHERE app_name = %(app_name)s
  AND (tx_id, position) > (%(after_tx)s::xid8, %(after_position)s)
  AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
  AND (%(user_id)s = '' OR user_id = %(user_id)s)
  AND (%(agent_id)s = '' OR agent_id = %(agent_id)s)
  AND EXISTS (SELECT 1 FROM sessions WHERE sessions.id = events.session_id AND {LIVE})
ORDER BY tx_id, position
LIMIT %(limit)s
"""
# An event whose tx_id this cluster has not reached yet was made in another cluster: a logical
# dump restored here, or logical replication. Feeds and search paging compare tx_id with this
# cluster's snapshots, so such events would stay hidden from them.
SELECT_FOREIGN_TX_ID: LiteralString = """
SELECT events.tx_id::text AS newest, pg_snapshot_xmax(pg_current_snapshot())::text AS next
FROM events
WHERE events.tx_id >= pg_snapshot_xmax(pg_current_snapshot())
ORDER BY events.tx_id DESC
LIMIT 1
"""
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


class EventRepository:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def append(self, messages: list[AppendMessage], max_state_bytes: int) -> AppendResult:
        """Write the messages in order in one transaction, up to the first that cannot be
        written (see APPEND). Every event must have its `event_id` set."""
        rows: list[dict[str, Any]] = []
        for attempt in range(APPEND_ATTEMPTS):
            try:
                rows = await self._append_once(messages, max_state_bytes)
                break
            except psycopg.errors.UniqueViolation as exc:
                # Another writer stored one of these event ids while this append waited for
                # the session lock: a new statement sees it and counts it as a duplicate.
                last_attempt = attempt == APPEND_ATTEMPTS - 1
                if exc.diag.constraint_name != "events_session_event_id_key" or last_attempt:
                    raise
        if rows and rows[0]["state_too_large"]:
            if len(messages) == 1:
                return AppendResult([], _state_too_large(max_state_bytes))
            return await self._append_one_by_one(messages, max_state_bytes)
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
                )
            )
        return result

    async def _append_once(
        self, messages: list[AppendMessage], max_state_bytes: int
    ) -> list[dict[str, Any]]:
        header: list[list[Any]] = []
        rows: list[str] = []
        for number, message in enumerate(messages, start=1):
            header.append([message.session_id, message.expected_last_seq, len(message.events)])
            rows.extend(_event_json(number, event) for event in message.events)
        params = {
            "messages": json.dumps(header),
            "events": "[" + ",".join(rows) + "]",
            "max_state_bytes": max_state_bytes,
        }
        async with self._database.connection() as connection:
            cursor = await connection.execute(APPEND, params)
            return await cursor.fetchall()

    async def _append_one_by_one(
        self, messages: list[AppendMessage], max_state_bytes: int
    ) -> AppendResult:
        result = AppendResult([])
        for message in messages:
            single = await self.append([message], max_state_bytes)
            result.outcomes.extend(single.outcomes)
            if single.failure is not None:
                result.failure = single.failure
                break
        return result

    async def list_events(
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
            rows = await fetch_tuples(connection, query, params)
        return [event_from_row(row) for row in rows]

    async def read_after(self, session_id: str, after_seq: int, limit: int) -> list[Event]:
        """Up to `limit` events of a session with seq > `after_seq`, in order."""
        params = {"session_id": session_id, "after_seq": after_seq, "limit": limit}
        async with self._database.connection() as connection:
            rows = await fetch_tuples(connection, READ_AFTER, params)
        return [event_from_row(row) for row in rows]

    async def read_feed(
        self, scope: FeedScope, after: FeedPosition, limit: int
    ) -> list[tuple[FeedPosition, Event]]:
        """Up to `limit` events of the scope after `after`, in commit order, each with its
        feed position."""
        params = {
            "app_name": scope.app_name,
            "user_id": scope.user_id,
            "agent_id": scope.agent_id,
            "after_tx": str(after[0]),
            "after_position": after[1],
            "limit": limit,
        }
        async with self._database.connection() as connection:
            rows = await fetch_tuples(connection, READ_FEED, params)
        events = [event_from_row(row) for row in rows]
        return [
            ((int(row[AFTER_EVENT_COLUMNS]), event.position), event)  # tx_id, position
            for row, event in zip(rows, events, strict=True)
        ]

    async def foreign_tx_id(self) -> tuple[str, str] | None:
        """The newest tx_id of an event from another cluster (see SELECT_FOREIGN_TX_ID), and
        this cluster's next transaction id; None when there is none."""
        async with self._database.connection() as connection:
            cursor = await connection.execute(SELECT_FOREIGN_TX_ID)
            row = await cursor.fetchone()
        return None if row is None else (row["newest"], row["next"])

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


# Built once: json.dumps with options builds a new encoder on every call, here per event.
_SCALARS_JSON = json.JSONEncoder(ensure_ascii=False)


def _event_json(number: int, event: NewEvent) -> str:
    """One event as a row of APPEND's `events` parameter."""
    role = event.content.role if event.content is not None else None
    text = event.content.text if event.content is not None else ""
    scalars = _SCALARS_JSON.encode(
        [number, event.event_id, event.type, event.author, event.invocation_id,
         event.agent_id, event.branch, role, text]
    )  # fmt: skip
    state_delta = event.actions.state_delta if event.actions is not None else None
    data = event.data.encoded if event.data is not None else "null"
    actions = f'{{"state_delta":{state_delta.encoded}}}' if state_delta else "null"
    metadata = event.metadata.encoded if event.metadata is not None else "null"
    return f"{scalars[:-1]},{data},{actions},{metadata}]"


def _failure(kind: str, session_id: str, last_seq: int) -> DomainError:
    if kind == "session_not_found":
        return session_not_found(session_id)
    return ExpectationFailed(
        f"session {session_id!r} is at last_seq {last_seq}; nothing of this message was written",
        reason="LAST_SEQ_MISMATCH",
        metadata={"session_id": session_id, "last_seq": str(last_seq)},
    )


def _state_too_large(max_state_bytes: int) -> InvalidArgument:
    return InvalidArgument.of(
        "events.actions.state_delta",
        f"merging the state deltas would make the session state exceed {max_state_bytes} bytes",
    )


def event_from_row(row: Sequence[Any]) -> Event:
    """The event of a row that starts with EVENT_COLUMNS (read with `tuple_row`)."""
    actions = row[12]
    return Event(
        row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9],
        row[10], row[11],
        actions.get("state_delta") if actions else None,  # state_delta
        row[13], row[14],  # metadata, create_time
    )  # fmt: skip
