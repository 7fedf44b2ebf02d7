"""Export and import: sessions with their whole history as JSON lines (docs/export-format.md).

An export file is a header line, then for each session one `{"session": ...}` line followed by
one `{"event": ...}` line per event in seq order; the objects carry the proto's field names
(agentstore.client.plain). An import creates each session with its id and time and appends
its events with their ids, seqs and times, batched and pipelined over AppendStream. It is
idempotent and resumable: a session that exists already continues after its last seq (its
events' ids make any overlap a duplicate), and a second import of the same file adds
nothing. Keeping times takes an admin key."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from agentstore.client.async_client import AsyncClient
from agentstore.client.errors import AgentstoreError, AlreadyExists
from agentstore.client.plain import plain, time_text
from agentstore.client.types import AppendResult, Event

__all__ = [
    "FORMAT",
    "VERSION",
    "ExportSummary",
    "ExportedSession",
    "ImportProblem",
    "ImportSummary",
    "ScopedStateRecord",
    "export_sessions",
    "import_sessions",
    "read_export",
    "restore_scoped_states",
]

FORMAT = "agentstore-export"
VERSION = 1
# Events per append request of an import: large enough to commit in few transactions, small
# enough to stay far below the server's message limits.
IMPORT_BATCH_EVENTS = 500
IMPORT_BATCH_BYTES = 1 << 20
# Sessions imported at once: while one waits for its acknowledgements, others send.
IMPORT_SESSIONS_IN_FLIGHT = 4

Progress = Callable[[int, int], None]  # (sessions, events) done so far


class ImportProblem(Exception):
    """A session the import could not bring over as it was exported."""


@dataclass
class ExportSummary:
    sessions: int = 0
    events: int = 0


@dataclass
class ImportSummary:
    """What an import did: sessions made and found, events appended and found already
    stored, and what it could not do (one line each)."""

    sessions_created: int = 0
    sessions_existing: int = 0
    events_appended: int = 0
    events_present: int = 0
    problems: list[str] = field(default_factory=list)


async def export_sessions(
    client: AsyncClient,
    out: TextIO,
    *,
    app_name: str = "",
    user_id: str = "",
    session_id: str = "",
    progress: Progress | None = None,
) -> ExportSummary:
    """Write the header, the states of the apps and users of the sessions exported, then each
    session (one, or every live one of an app or user) and its events."""
    summary = ExportSummary()
    header = {"format": FORMAT, "version": VERSION, "exported_at": time_text(datetime.now(UTC))}
    _write(out, header)
    if session_id:
        sessions = [await client.get_session(session_id)]
    else:
        sessions = [s async for s in client.list_sessions(app_name, user_id=user_id, view="full")]
    for scope in sorted(
        {(s.app_name, "") for s in sessions} | {(s.app_name, s.user_id) for s in sessions}
    ):
        state = await client.get_state(*scope)
        if state.version:  # ever set
            kind = "user_state" if scope[1] else "app_state"
            _write(out, {kind: {"app_name": scope[0], "user_id": scope[1], "state": state.state}})
    for session in sessions:
        _write(out, {"session": plain(session)})
        summary.sessions += 1
        async for event in client.stream_events(session_id=session.id):
            _write(out, {"event": plain(event)})
            summary.events += 1
            if progress is not None and summary.events % 1000 == 0:
                progress(summary.sessions, summary.events)
    if progress is not None:
        progress(summary.sessions, summary.events)
    return summary


def _write(out: TextIO, value: dict[str, Any]) -> None:
    out.write(json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n")


@dataclass
class ScopedStateRecord:
    """The state of an app (empty `user_id`) or of one of its users, to set as it is."""

    app_name: str
    user_id: str
    state: dict[str, Any]


@dataclass
class ExportedSession:
    """One session of an export file: its fields, its events' fields, and each event's line
    length (a cheap measure of its size, for batching)."""

    fields: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)


def read_export(
    lines: Iterable[str], scoped_states: list[ScopedStateRecord] | None = None
) -> Iterator[ExportedSession]:
    """The sessions of an export file, one at a time; its app and user states go into
    `scoped_states` (for `restore_scoped_states` after the sessions). Raises `ValueError` for
    a file that is not an export of a known version."""
    rows = ((json.loads(line), len(line)) for line in lines if line.strip())
    header, _ = next(rows, (None, 0))
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"not an {FORMAT} file (its first line is not the header)")
    if header.get("version") != VERSION:
        raise ValueError(f"export format version {header.get('version')} is not {VERSION}")
    session: ExportedSession | None = None
    for number, (row, size) in enumerate(rows, start=2):
        if "session" in row:
            if session is not None:
                yield session
            session = ExportedSession(row["session"])
        elif "event" in row:
            if session is None:
                raise ValueError(f"line {number}: an event before any session")
            session.events.append(row["event"])
            session.sizes.append(size)
        elif "app_state" in row or "user_state" in row:
            fields = row.get("app_state") or row["user_state"]
            if scoped_states is not None:
                scoped_states.append(
                    ScopedStateRecord(
                        fields["app_name"], fields.get("user_id", ""), fields["state"]
                    )
                )
        else:
            raise ValueError(f"line {number}: not a session, an event or a state")
    if session is not None:
        yield session


async def import_sessions(
    client: AsyncClient,
    sessions: Iterable[ExportedSession] | AsyncIterable[ExportedSession],
    *,
    progress: Progress | None = None,
    concurrency: int = IMPORT_SESSIONS_IN_FLIGHT,
) -> ImportSummary:
    """Import sessions and their events (an export file's: `read_export(lines)`, or another
    store's: agentstore.client.importers), as the module's docstring says, up to
    `concurrency` sessions at a time so that the server always has work."""
    summary = ImportSummary()
    done = {"sessions": 0, "events": 0}
    slots = asyncio.Semaphore(concurrency)

    async def one(session: ExportedSession) -> None:
        try:
            await _import_session(client, session, summary)
        finally:
            slots.release()
        done["sessions"] += 1
        done["events"] += len(session.events)
        if progress is not None:
            progress(done["sessions"], done["events"])

    running: set[asyncio.Task[None]] = set()
    try:
        async for session in _each(sessions):
            await slots.acquire()
            task = asyncio.create_task(one(session))
            running.add(task)
            task.add_done_callback(running.discard)
    finally:
        # Sessions already under way finish even when a later line of the file is bad.
        await asyncio.gather(*running)
    return summary


async def _each(
    sessions: Iterable[ExportedSession] | AsyncIterable[ExportedSession],
) -> AsyncIterator[ExportedSession]:
    if isinstance(sessions, AsyncIterable):
        async for session in sessions:
            yield session
    else:
        for session in sessions:
            yield session


async def _import_session(
    client: AsyncClient, session: ExportedSession, summary: ImportSummary
) -> None:
    try:
        start = await _ensure_session(client, session.fields, summary)
        appended = await _append_history(client, session, start)
    except (AgentstoreError, ImportProblem) as exc:
        summary.problems.append(f"session {session.fields.get('id')}: {exc}")
        return
    for result in appended:
        summary.events_appended += result.appended
        summary.events_present += result.duplicates
    summary.events_present += sum(1 for e in session.events if e.get("seq", 0) <= start)
    await _restore_state(client, session.fields, summary)


async def _ensure_session(
    client: AsyncClient, fields: dict[str, Any], summary: ImportSummary
) -> int:
    """Create the session as exported (its state comes back through its events, then
    `_restore_state`); for one that exists, its last seq, after which the import goes on."""
    expire_time = fields.get("expire_time")
    expires = datetime.fromisoformat(expire_time) if expire_time else None
    if expires is not None and expires <= datetime.now(UTC):
        raise ImportProblem(f"it expired at {expire_time}; not imported")
    create_time = fields.get("create_time")
    try:
        await client.create_session(
            fields["app_name"],
            session_id=fields["id"],
            user_id=fields.get("user_id", ""),
            agent_id=fields.get("agent_id", ""),
            metadata=fields.get("metadata") or {},
            status=fields.get("status"),
            create_time=datetime.fromisoformat(create_time) if create_time else None,
        )
    except AlreadyExists:
        summary.sessions_existing += 1
        return (await client.get_session(fields["id"], view="basic")).last_seq
    summary.sessions_created += 1
    if expires is not None:  # the exact time: CreateSession only takes a ttl from now
        await client.update_session(fields["id"], expire_time=expires)
    return 0


async def _append_history(
    client: AsyncClient, session: ExportedSession, after_seq: int
) -> list[AppendResult]:
    """Append the events after `after_seq`, in batches, many in flight; each batch is
    guarded by the seq the session must be at, so that seqs stay the exported ones."""
    batches = list(_batches(session, after_seq))
    futures = []
    async with client.append_stream() as writer:
        for batch in batches:
            futures.append(
                await writer.append(
                    session.fields["id"],
                    batch,
                    expected_last_seq=batch[0].seq - 1,
                    keep_times=True,
                )
            )
    results = []
    for batch, future in zip(batches, futures, strict=True):
        result = await future
        if result.seqs != tuple(event.seq for event in batch):
            raise ImportProblem(
                f"events {batch[0].seq}-{batch[-1].seq} were stored as seqs"
                f" {result.seqs[0]}-{result.seqs[-1]}"
            )
        results.append(result)
    return results


def _batches(session: ExportedSession, after_seq: int) -> Iterator[list[Event]]:
    """The session's events after `after_seq` in batches of at most IMPORT_BATCH_EVENTS
    events and about IMPORT_BATCH_BYTES (by their lines' lengths)."""
    batch: list[Event] = []
    size = 0
    for fields, weight in zip(session.events, session.sizes, strict=True):
        if fields.get("seq", 0) <= after_seq:
            continue
        if batch and (len(batch) >= IMPORT_BATCH_EVENTS or size + weight > IMPORT_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(Event.from_dict(fields))
        size += weight
    if batch:
        yield batch


async def restore_scoped_states(
    client: AsyncClient, records: Iterable[ScopedStateRecord], summary: ImportSummary
) -> None:
    """Make each app's and user's state the recorded one (after the sessions: their events'
    deltas rebuilt most of it already)."""
    for record in records:
        current = (await client.get_state(record.app_name, record.user_id)).state
        delta = _delta_between(current, record.state)
        if delta:
            try:
                await client.update_state(record.app_name, record.user_id, state_delta=delta)
            except AgentstoreError as exc:
                where = f"{record.app_name} {record.user_id}".strip()
                summary.problems.append(f"state of {where} not restored: {exc}")


def _delta_between(current: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """The delta that makes `current` into `wanted` (None removes a key)."""
    delta: dict[str, Any] = {key: None for key in current if key not in wanted}
    delta.update({key: value for key, value in wanted.items() if current.get(key) != value})
    return delta


async def _restore_state(
    client: AsyncClient, fields: dict[str, Any], summary: ImportSummary
) -> None:
    """Make the session's state the exported one: its events' deltas rebuilt most of it; a
    state also changed by UpdateSession needs one more delta."""
    exported: dict[str, Any] = fields.get("state") or {}
    current = (await client.get_session(fields["id"])).state
    delta = _delta_between(current, exported)
    if delta:
        try:
            await client.update_session(fields["id"], state_delta=delta)
        except AgentstoreError as exc:
            summary.problems.append(f"session {fields['id']}: state not restored: {exc}")
