"""The repositories against a real PostgreSQL: scopes confine every statement, database errors
come out translated, the shared rules hold, and the doorbell reaches a listener."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from agentstore.background import BackgroundTasks
from agentstore.config import Settings
from agentstore.domain.callers import EVERY_APP, Scope
from agentstore.domain.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    StoreUnavailable,
)
from agentstore.domain.events import AppendMessage, EventFilter, FeedScope
from agentstore.domain.limits import Limits
from agentstore.domain.search import SearchFilter
from agentstore.domain.sessions import SessionFilter, SessionPatch, SessionStatus
from agentstore.live.doorbell import Doorbell
from agentstore.live.hub import Hub
from agentstore.store.database import Database
from agentstore.store.errors import StoreNotReady
from agentstore.store.events import EventRepository
from agentstore.store.migrator import apply_migrations
from agentstore.store.notifications import Listener, notify
from agentstore.store.search import SearchRepository
from agentstore.store.sessions import SessionRepository

LIMITS = Limits(max_state_bytes=200)
ONLY_A = Scope(("app-a",))


@pytest.fixture(scope="module")
async def migrated_url(create_database: Callable[[], Awaitable[str]]) -> str:
    url = await create_database()
    await apply_migrations(url)
    return url


@pytest.fixture
async def database(migrated_url: str) -> AsyncIterator[Database]:
    opened = Database(migrated_url, min_size=1, max_size=4)
    await opened.open(30)
    yield opened
    await opened.close()


async def new_session(
    sessions: SessionRepository, session_id: str, app_name: str, state: dict[str, object]
) -> None:
    await sessions.insert(
        EVERY_APP, session_id=session_id, app_name=app_name, user_id="u", agent_id="",
        status=SessionStatus.ACTIVE, metadata={}, state=state, ttl=None,
    )  # fmt: skip


def append_message(session_id: str, *event_ids: str, delta: object = None) -> AppendMessage:
    events = [
        {"event_id": event_id, "type": "note", "content": {"role": "user", "text": event_id}}
        | ({"actions": {"state_delta": delta}} if delta is not None else {})
        for event_id in event_ids
    ]
    return AppendMessage.model_validate({"session_id": session_id, "events": events})


async def test_a_scope_confines_every_session_statement(database: Database) -> None:
    sessions = SessionRepository(database, LIMITS)
    await new_session(sessions, "scope-a", "app-a", {})
    await new_session(sessions, "scope-b", "app-b", {})
    assert (await sessions.get(ONLY_A, "scope-a")).app_name == "app-a"
    with pytest.raises(NotFound):
        await sessions.get(ONLY_A, "scope-b")
    listed = await sessions.list(ONLY_A, SessionFilter(), after=None, limit=100)
    assert {s.app_name for s in listed} == {"app-a"}
    with pytest.raises(NotFound):
        await sessions.update(
            ONLY_A, SessionPatch(session_id="scope-b", fields=frozenset({"metadata"}))
        )
    with pytest.raises(NotFound):
        await sessions.soft_delete(ONLY_A, "scope-b")
    with pytest.raises(NotFound):
        await sessions.purge(ONLY_A, "scope-b")
    assert await sessions.delete_many(ONLY_A, "app-b", "", purge=True) == 0
    assert (await sessions.store_stats(ONLY_A, "")).total_sessions == len(listed)
    with pytest.raises(PermissionDenied):
        await new_session_in(sessions, ONLY_A, "scope-c", "app-b")
    assert (await sessions.get(EVERY_APP, "scope-b")).app_name == "app-b"


async def new_session_in(
    sessions: SessionRepository, scope: Scope, session_id: str, app_name: str
) -> None:
    await sessions.insert(
        scope, session_id=session_id, app_name=app_name, user_id="", agent_id="",
        status=SessionStatus.ACTIVE, metadata={}, state={}, ttl=None,
    )  # fmt: skip


async def test_a_scope_confines_every_event_statement(database: Database) -> None:
    sessions, events = SessionRepository(database, LIMITS), EventRepository(database, LIMITS)
    search = SearchRepository(database, candidates=100)
    await new_session(sessions, "events-b", "app-b", {})
    result = await events.append(ONLY_A, [append_message("events-b", "hidden")])
    assert isinstance(result.failure, NotFound)
    assert (await events.append(EVERY_APP, [append_message("events-b", "hidden")])).failure is None
    with pytest.raises(NotFound):
        await events.list_events(ONLY_A, EventFilter(session_id="events-b"), after=None, limit=9)
    assert await events.read_after(ONLY_A, "events-b", 0, 10) == []
    feed = await events.read_feed(ONLY_A, FeedScope("app-b"), (0, 0), 10)
    assert feed == []
    with pytest.raises(NotFound):
        await events.session_stats(ONLY_A, "events-b")
    hits = await search.search(ONLY_A, SearchFilter(query="hidden"), "hidden", after=None, limit=5)
    assert hits.hits == []
    everywhere = await search.search(
        EVERY_APP, SearchFilter(query="hidden", app_name="app-b"), "hidden", after=None, limit=5
    )
    assert [hit.event.session_id for hit in everywhere.hits] == ["events-b"]


async def test_a_taken_id_is_already_exists_naming_the_session(database: Database) -> None:
    sessions = SessionRepository(database, LIMITS)
    await new_session(sessions, "taken", "app-a", {})
    with pytest.raises(AlreadyExists) as caught:
        await new_session(sessions, "taken", "app-a", {})
    assert caught.value.metadata == {"session_id": "taken"}
    assert isinstance(caught.value.__cause__, psycopg.errors.UniqueViolation)


async def test_one_state_measure_at_create_update_and_append(database: Database) -> None:
    sessions, events = SessionRepository(database, LIMITS), EventRepository(database, LIMITS)
    # {"k": "xxx..."} as jsonb text: '{"k": "' + x * n + '"}' = n + 9 bytes.
    with pytest.raises(InvalidArgument) as too_large:
        await new_session(sessions, "measure-0", "app-a", {"k": "x" * 192})
    assert [v.field for v in too_large.value.violations] == ["state"]
    await new_session(sessions, "measure-1", "app-a", {"k": "x" * 191})  # exactly 200
    patch = SessionPatch(
        session_id="measure-1", fields=frozenset({"state_delta"}), state_delta={"k": "y" * 191}
    )
    assert (await sessions.update(EVERY_APP, patch)).state == {"k": "y" * 191}
    grow = SessionPatch(
        session_id="measure-1", fields=frozenset({"state_delta"}), state_delta={"k": "y" * 192}
    )
    with pytest.raises(InvalidArgument):
        await sessions.update(EVERY_APP, grow)
    result = await events.append(
        EVERY_APP,
        [
            append_message("measure-1", "fine", delta={"k": "z" * 191}),
            append_message("measure-1", "grows", delta={"k": "z" * 192}),
        ],
    )
    assert [o.appended for o in result.outcomes] == [1]
    assert isinstance(result.failure, InvalidArgument)
    assert (await sessions.get(EVERY_APP, "measure-1")).state == {"k": "z" * 191}


async def test_the_state_merge_sets_and_removes_keys_in_order(database: Database) -> None:
    sessions, events = SessionRepository(database, Limits()), EventRepository(database, Limits())
    await new_session(sessions, "merge", "app-a", {"keep": 1, "drop": 2, "change": 3})
    await events.append(
        EVERY_APP,
        [
            append_message("merge", "m1", delta={"change": 4, "drop": None, "new": [1]}),
            append_message("merge", "m2", delta={"change": 5}),
        ],
    )
    merged = await sessions.get(EVERY_APP, "merge")
    assert merged.state == {"keep": 1, "change": 5, "new": [1]}
    assert (merged.last_seq, merged.event_count, merged.version) == (2, 2, 3)
    stats = await events.session_stats(EVERY_APP, "merge")
    assert (stats.event_count, stats.events_by_type, stats.events_by_role) == (
        2,
        {"note": 2},
        {"user": 2},
    )


async def test_an_unreachable_database_is_store_unavailable(migrated_url: str) -> None:
    database = Database(migrated_url, min_size=1, max_size=1)
    await database.open(30)
    sessions = SessionRepository(database, LIMITS)
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as admin:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    try:
        with pytest.raises(StoreUnavailable):
            await sessions.get(EVERY_APP, "anything")
    finally:
        await database.close()


async def test_events_from_another_cluster_stop_start_up(database: Database) -> None:
    sessions, events = SessionRepository(database, LIMITS), EventRepository(database, LIMITS)
    await events.check_transaction_ids()
    await new_session(sessions, "foreign", "app-a", {})
    await events.append(EVERY_APP, [append_message("foreign", "f1")])
    async with database.connection() as connection:
        await connection.execute(
            "UPDATE events SET tx_id = (pg_current_xact_id()::text::bigint + 1000000)::text::xid8"
            " WHERE session_id = 'foreign'"
        )
    try:
        with pytest.raises(StoreNotReady, match="another PostgreSQL cluster"):
            await events.check_transaction_ids()
    finally:
        async with database.connection() as connection:
            await connection.execute("UPDATE events SET tx_id = '3' WHERE session_id = 'foreign'")


class _RecordingHub(Hub):
    """A hub that only records the rings it gets, in `rung`."""

    def __init__(self, tasks: BackgroundTasks) -> None:
        super().__init__(
            _nothing_to_read, _nothing_to_read, tasks=tasks, buffer_batches=1, max_streams=1
        )
        self.rung: list[tuple[str, str]] = []

    def ring(self, app_name: str, session_id: str) -> None:
        self.rung.append((app_name, session_id))


async def _nothing_to_read(*_: object) -> list[Any]:
    return []


async def test_the_doorbell_rings_this_replica_at_once_and_others_through_notify(
    database: Database, migrated_url: str
) -> None:
    tasks = BackgroundTasks()
    heard: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    hub = _RecordingHub(tasks)
    listener = Listener(migrated_url, lambda a, s: heard.put_nowait((a, s)), lambda: None)
    tasks.spawn(listener.run(), name="listener")
    try:
        await asyncio.wait_for(listener.connected.wait(), 30)
        doorbell = Doorbell(hub, lambda pairs: notify(database, pairs), tasks)
        doorbell.ring([("app-a", "s-1"), ("app-a", "s-2")])
        assert hub.rung == [("app-a", "s-1"), ("app-a", "s-2")]  # before any round trip
        received = {await asyncio.wait_for(heard.get(), 30) for _ in range(2)}
        assert received == {("app-a", "s-1"), ("app-a", "s-2")}
    finally:
        await tasks.close()


async def test_alone_a_replica_rings_only_its_own_followers(database: Database) -> None:
    """With no other replica listening, the doorbell wakes this replica's followers and sends
    no NOTIFY; once one listens, it sends the rings that piled up from then on."""
    tasks = BackgroundTasks()
    sent: asyncio.Queue[list[tuple[str, str]]] = asyncio.Queue()

    async def record(pairs: list[tuple[str, str]]) -> None:
        sent.put_nowait(pairs)

    others_listening = False
    hub = _RecordingHub(tasks)
    doorbell = Doorbell(hub, record, tasks, others_listening=lambda: others_listening)
    try:
        doorbell.ring([("app-a", "s-1")])
        others_listening = True
        doorbell.ring([("app-a", "s-2")])
        assert hub.rung == [("app-a", "s-1"), ("app-a", "s-2")]
        # The first ring's NOTIFY would have been sent first: only the second is.
        assert await asyncio.wait_for(sent.get(), 30) == [("app-a", "s-2")]
    finally:
        await tasks.close()
    assert sent.empty()


def _silent_listener(url: str, peer_check_seconds: float) -> Listener:
    return Listener(url, lambda a, s: None, lambda: None, peer_check_seconds=peer_check_seconds)


async def test_a_listener_knows_it_is_alone_until_another_greets_it(migrated_url: str) -> None:
    """Alone on its database, a listener's first look finds nobody else listening; a second
    listener's greeting tells it otherwise at once (its next look is an hour away), and the
    second one's own first look finds the first."""
    tasks = BackgroundTasks()
    first = _silent_listener(migrated_url, peer_check_seconds=3600)
    tasks.spawn(first.run(), name="first")
    try:
        await asyncio.wait_for(first.wait_for(lambda listener: listener.looks >= 1), 30)
        assert not first.others_listening
        second = _silent_listener(migrated_url, peer_check_seconds=3600)
        tasks.spawn(second.run(), name="second")
        await asyncio.wait_for(first.wait_for(lambda listener: listener.others_listening), 30)
        assert first.looks == 1
        await asyncio.wait_for(second.wait_for(lambda listener: listener.looks >= 1), 30)
        assert second.others_listening
    finally:
        await tasks.close()


async def test_a_listener_finds_itself_alone_again_once_the_other_is_gone(
    migrated_url: str,
) -> None:
    watching = _silent_listener(migrated_url, peer_check_seconds=0.05)
    other = _silent_listener(migrated_url, peer_check_seconds=3600)
    tasks, other_tasks = BackgroundTasks(), BackgroundTasks()
    tasks.spawn(watching.run(), name="watching")
    other_tasks.spawn(other.run(), name="other")
    try:
        await asyncio.wait_for(other.connected.wait(), 30)
        looked = watching.looks
        await asyncio.wait_for(watching.wait_for(lambda listener: listener.looks > looked + 1), 30)
        assert watching.others_listening
        await other_tasks.close()
        await asyncio.wait_for(
            watching.wait_for(lambda listener: not listener.others_listening), 30
        )
    finally:
        await other_tasks.close()
        await tasks.close()


def test_limits_default_is_what_settings_default_to() -> None:
    assert Settings().limits == Limits()
    assert timedelta(0) < Settings().expired_grace
