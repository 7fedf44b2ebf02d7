"""Sessions of other stores, read as an export's sessions so that `import_sessions` brings
them in the same way: ids kept, seqs in the other store's order, times kept, idempotent.

- OpenAI Agents' SQLiteSession file (`agentstore import --from openai-agents FILE`): each
  session of its sessions table becomes a session of `app_name` (OpenAI Agents has no apps or
  users), each stored item an event (agentstore.client.openai_agents_items), its row id the
  event id (`oai-<id>`), so that importing again adds nothing.

What cannot be brought over is named in `problems`, one line per session or item."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from agentstore.client.openai_agents_items import event_from_item
from agentstore.client.plain import plain, time_text
from agentstore.client.transfer import ExportedSession

__all__ = ["read_openai_agents_sqlite"]

# What agentstore takes as a session id (the server checks it too; this names the problem
# before anything is sent).
_SAFE_ID = re.compile(r"[A-Za-z0-9._:@+\-]{1,128}")
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
            if not _SAFE_ID.fullmatch(session_id):
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
