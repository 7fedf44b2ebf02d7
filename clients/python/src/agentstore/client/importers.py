"""Sessions of other stores, read as an export's sessions so that `import_sessions` brings
them in the same way: ids kept, seqs in the other store's order, times kept, idempotent.

- OpenAI Agents' SQLiteSession file (`agentstore import --from openai-agents FILE`): each
  session of its sessions table becomes a session of `app_name` (OpenAI Agents has no apps or
  users), each stored item an event (agentstore.client.openai_agents_items), its row id the
  event id (`oai-<id>`), so that importing again adds nothing.

- Google ADK's DatabaseSessionService tables (`agentstore import --from adk DATABASE_URL`,
  the URL ADK was given, e.g. `sqlite+aiosqlite:///sessions.db`), read through ADK's own
  service (`pip install 'agentstore-client[adk]'`): each session keeps its app and user, its
  id becomes `adk_events.session_key()` (ADK's id in `metadata.adk_session_id`), each event
  keeps its id and time and comes back field for field (agentstore.client.adk_events).
  Sessions keep their own state, apps and users theirs (ADK's `app:` and `user:` keys).

What cannot be brought over is named in `problems`, one line per session or item."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from agentstore.client.ids import DEFAULT_MAX_ID_LENGTH, SAFE_ID_PATTERN
from agentstore.client.openai_agents_items import event_from_item
from agentstore.client.plain import plain, time_text
from agentstore.client.transfer import ExportedSession, ScopedStateRecord

__all__ = ["read_adk_database", "read_openai_agents_sqlite"]


def _valid_id(value: str) -> bool:
    """Whether a server with the default limits takes `value` as an id (it checks again;
    this names the problem before anything is sent)."""
    return 0 < len(value) <= DEFAULT_MAX_ID_LENGTH and bool(SAFE_ID_PATTERN.fullmatch(value))


_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _sqlite_time(text: str | None) -> str | None:
    """SQLite's CURRENT_TIMESTAMP text (UTC, 'YYYY-MM-DD HH:MM:SS') as RFC 3339."""
    if not text:
        return None
    return time_text(datetime.fromisoformat(text).replace(tzinfo=UTC))


def read_openai_agents_sqlite(
    path: str | Path,
    *,
    app_name: str,
    user_id: str = "",
    problems: list[str],
    sessions_table: str = "agent_sessions",
    messages_table: str = "agent_messages",
) -> Iterator[ExportedSession]:
    """The sessions of a SQLiteSession database file, each with its items in order."""
    for table in (sessions_table, messages_table):
        if not _TABLE_NAME.fullmatch(table):
            raise ValueError(f"not a table name: {table!r}")
    if not Path(path).is_file():
        raise ValueError(f"no such file: {path}")
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as database:
        sessions = database.execute(
            f"SELECT session_id, created_at FROM {sessions_table} ORDER BY created_at, session_id"
        ).fetchall()
        for session_id, created_at in sessions:
            if not _valid_id(session_id):
                problems.append(
                    f"session {session_id!r}: not a valid agentstore id"
                    " (1-128 of A-Z a-z 0-9 . _ : @ + -); not imported"
                )
                continue
            exported = ExportedSession(
                {
                    "id": session_id,
                    "app_name": app_name,
                    "user_id": user_id,
                    "create_time": _sqlite_time(created_at),
                }
            )
            rows = database.execute(
                f"SELECT id, message_data, created_at FROM {messages_table}"
                " WHERE session_id = ? ORDER BY id",
                (session_id,),
            )
            for row_id, message_data, item_time in rows:
                try:
                    item = json.loads(message_data)
                except json.JSONDecodeError:
                    problems.append(f"session {session_id!r}: item {row_id} is not JSON; skipped")
                    continue
                if not isinstance(item, dict):
                    problems.append(f"session {session_id!r}: item {row_id} is not an object")
                    continue
                created = _sqlite_time(item_time)
                event = event_from_item(
                    item,
                    event_id=f"oai-{row_id}",
                    create_time=datetime.fromisoformat(created) if created else None,
                )
                fields = plain(event)
                fields["seq"] = len(exported.events) + 1
                exported.events.append(fields)
                exported.sizes.append(len(message_data))
            yield exported


async def read_adk_database(
    db_url: str, *, problems: list[str], scoped_states: list[ScopedStateRecord]
) -> AsyncIterator[ExportedSession]:
    """The sessions of ADK's DatabaseSessionService tables at `db_url`, each with its events
    in ADK's order (timestamp, then id); the app and user states go into `scoped_states`, to be
    set once the sessions are in (`restore_scoped_states`)."""
    try:
        from google.adk.sessions import DatabaseSessionService
        from sqlalchemy import text
    except ImportError:
        raise ValueError(
            "importing from ADK needs google-adk: pip install 'agentstore-client[adk]'"
        ) from None

    from agentstore.client.adk_events import event_from_adk_event, session_key, session_state

    service = DatabaseSessionService(db_url=db_url)
    try:
        async with service.db_engine.connect() as connection:
            keys = (
                await connection.execute(
                    text("SELECT app_name, user_id, id, create_time FROM sessions")
                )
            ).all()
            for table in ("app_states", "user_states"):
                for row in (await connection.execute(text(f"SELECT * FROM {table}"))).all():
                    # JSON text on SQLite, already decoded on PostgreSQL.
                    state = row.state if isinstance(row.state, dict) else json.loads(row.state)
                    user = row.user_id if table == "user_states" else ""
                    scoped_states.append(ScopedStateRecord(row.app_name, user, state))
        for app_name, user_id, adk_id, create_time in sorted(keys, key=lambda k: str(k[3])):
            for label, value in (("app", app_name), ("user", user_id)):
                if value and not _valid_id(value):
                    problems.append(f"session {adk_id!r}: {label} {value!r} is not valid here")
                    break
            else:
                adk_session = await service.get_session(
                    app_name=app_name, user_id=user_id, session_id=adk_id
                )
                if adk_session is None:  # deleted while this ran
                    continue
                created = _naive_utc(create_time)
                state = session_state(adk_session.state)
                nulls = sorted(key for key, value in state.items() if value is None)
                if nulls:
                    # ADK keeps a key set to None; agentstore's deltas remove such a key.
                    problems.append(
                        f"session {adk_id!r}: state keys set to None not kept: {', '.join(nulls)}"
                    )
                exported = ExportedSession(
                    {
                        "id": session_key(app_name, user_id, adk_id),
                        "app_name": app_name,
                        "user_id": user_id,
                        "metadata": {"adk_session_id": adk_id},
                        "state": {k: v for k, v in state.items() if v is not None},
                        "create_time": time_text(created) if created else None,
                    }
                )
                for adk_event in adk_session.events:
                    fields = plain(event_from_adk_event(adk_event))
                    fields["seq"] = len(exported.events) + 1
                    exported.events.append(fields)
                    exported.sizes.append(len(json.dumps(fields["data"])))
                yield exported
    finally:
        await service.close()


def _naive_utc(value: object) -> datetime | None:
    """A time as SQLAlchemy read it: naive (UTC, as ADK writes it) or aware, or text."""
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
