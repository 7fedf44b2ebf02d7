"""StreamEvents: replay, then follow live, on one replica or several, losing nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import psycopg
import pytest

from agentstore.app import AgentStoreServer
from agentstore.v1 import session_service_pb2 as pb
from agentstore.v1.session_service_pb2_grpc import SessionServiceStub
from tests.conftest import extra_server, server_settings
from tests.e2e.events_support import append, event, message
from tests.support import error_details


@pytest.fixture
async def session_id(stub: SessionServiceStub, app_name: str) -> str:
    return (await stub.CreateSession(pb.CreateSessionRequest(app_name=app_name, user_id="u"))).id


@pytest.fixture
async def replica(database_url: str) -> AsyncIterator[SessionServiceStub]:
    """A second server on the same database, with its own pool, hub and listener. It does
    not poll (in a test's time), so its followers hear of other replicas' appends only through
    NOTIFY: the tests below would fail if that were lost."""
    async with extra_server(database_url, live_poll_interval="1h") as stub:
        yield stub


async def read_until(
    call: grpc.aio.UnaryStreamCall,  # type: ignore[type-arg]
    done: Callable[[list[pb.StreamEventsResponse]], bool],
    seconds: float = 60,
) -> list[pb.StreamEventsResponse]:
    """Messages of a stream, until `done` says so (each read waits for the next message)."""
    received: list[pb.StreamEventsResponse] = []
    async with asyncio.timeout(seconds):
        while not done(received):
            received.append(await call.read())
    return received


def events_of(messages: list[pb.StreamEventsResponse]) -> list[object]:
    return [event for response in messages for event in response.events]


def count_at_least(n: int) -> Callable[[list[pb.StreamEventsResponse]], bool]:
    return lambda received: len(events_of(received)) >= n


async def test_replay_then_caught_up_without_follow(
    stub: SessionServiceStub, session_id: str
) -> None:
    await append(stub, *(message(session_id, [event(f"{m}-{e}") for e in range(500)])
                         for m in range(5)))  # fmt: skip
    responses = [r async for r in stub.StreamEvents(pb.StreamEventsRequest(session_id=session_id))]
    assert [e.seq for e in events_of(responses)] == list(range(1, 2501))
    assert responses[-1].caught_up
    assert len(responses) < 10  # replay comes in large batches

    later = [
        r
        async for r in stub.StreamEvents(
            pb.StreamEventsRequest(session_id=session_id, after_seq=2000, types=["note"])
        )
    ]
    assert [e.seq for e in events_of(later)] == list(range(2001, 2501))


async def test_follow_gets_every_event_while_appends_race_the_switch_to_live(
    stub: SessionServiceStub, session_id: str
) -> None:
    total = 600

    async def writer() -> None:
        for n in range(total):
            await append(stub, message(session_id, [event(str(n))]))

    writing = asyncio.create_task(writer())
    call = stub.StreamEvents(pb.StreamEventsRequest(session_id=session_id, follow=True))
    received = await read_until(call, count_at_least(total))
    await writing
    call.cancel()
    assert [e.seq for e in events_of(received)] == list(range(1, total + 1))
    assert sum(1 for r in received if r.caught_up) == 1


async def test_an_event_appended_on_one_replica_reaches_followers_on_another(
    stub: SessionServiceStub, replica: SessionServiceStub, session_id: str
) -> None:
    call = replica.StreamEvents(pb.StreamEventsRequest(session_id=session_id, follow=True))
    await read_until(call, lambda received: any(r.caught_up for r in received))
    await append(stub, message(session_id, [event("across replicas")]))
    received = await read_until(call, count_at_least(1))
    call.cancel()
    assert [e.content.text for e in events_of(received)] == ["across replicas"]


async def test_a_follower_that_does_not_read_gets_all_twenty_thousand_events(
    stub: SessionServiceStub, session_id: str
) -> None:
    call = stub.StreamEvents(pb.StreamEventsRequest(session_id=session_id, follow=True))
    await read_until(call, lambda received: any(r.caught_up for r in received))
    await append(
        stub, *(message(session_id, [event(f"{m}-{e}") for e in range(1000)]) for m in range(20))
    )
    received = await read_until(call, count_at_least(20_000))
    call.cancel()
    assert [e.seq for e in events_of(received)] == list(range(1, 20_001))


async def test_the_feed_waits_for_a_slow_transaction_that_took_an_earlier_position(
    stub: SessionServiceStub, app_name: str, database_url: str
) -> None:
    slow_session = (await stub.CreateSession(pb.CreateSessionRequest(app_name=app_name))).id
    fast_session = (await stub.CreateSession(pb.CreateSessionRequest(app_name=app_name))).id
    call = stub.StreamEvents(pb.StreamEventsRequest(app_name=app_name, follow=True))
    await read_until(call, lambda received: any(r.caught_up for r in received))

    async with await psycopg.AsyncConnection.connect(database_url) as slow:
        # The slow writer takes its transaction id and position first...
        await slow.execute(
            "INSERT INTO events (session_id, seq, event_id, app_name, type, content_text)"
            " VALUES (%s, 1, 'slow', %s, 'note', 'slow')",
            (slow_session, app_name),
        )
        await slow.execute("UPDATE sessions SET last_seq = 1 WHERE id = %s", (slow_session,))
        # ...a fast one commits after it...
        await append(stub, message(fast_session, [event("fast", event_id="fast")]))
        # ...and only then does the slow one commit. It rings no doorbell (it is not an
        # append of this service): the followers' slow poll finds its event.
        await slow.commit()

    received = await read_until(call, count_at_least(2))
    call.cancel()
    assert [e.event_id for e in events_of(received)] == ["slow", "fast"]
    # And a client resuming from the first event's token gets the second, once.
    token = events_of(received)[0].resume_token
    resumed = [
        r
        async for r in stub.StreamEvents(
            pb.StreamEventsRequest(app_name=app_name, resume_token=token)
        )
    ]
    assert [e.event_id for e in events_of(resumed)] == ["fast"]


async def test_a_feed_resumes_from_its_token_without_repeats(
    stub: SessionServiceStub, app_name: str
) -> None:
    sessions = [
        (await stub.CreateSession(pb.CreateSessionRequest(app_name=app_name, user_id=u))).id
        for u in ("alice", "bob", "alice")
    ]
    for n in range(30):
        await append(stub, message(sessions[n % 3], [event(str(n), event_id=f"e{n}")]))
    first = [r async for r in stub.StreamEvents(pb.StreamEventsRequest(app_name=app_name))]
    assert [e.event_id for e in events_of(first)] == [f"e{n}" for n in range(30)]
    middle = events_of(first)[11].resume_token
    rest = [
        r
        async for r in stub.StreamEvents(
            pb.StreamEventsRequest(app_name=app_name, resume_token=middle)
        )
    ]
    assert [e.event_id for e in events_of(rest)] == [f"e{n}" for n in range(12, 30)]
    alice = [
        r
        async for r in stub.StreamEvents(pb.StreamEventsRequest(app_name=app_name, user_id="alice"))
    ]
    assert [e.event_id for e in events_of(alice)] == [f"e{n}" for n in range(30) if n % 3 != 1]


async def next_ring(listening: psycopg.AsyncConnection[object]) -> str:
    """The next notification's payload on a connection that LISTENs, passing over the
    greetings of listeners (empty payloads)."""
    async with asyncio.timeout(30):
        while True:
            async for notification in listening.notifies(stop_after=1):
                if notification.payload:
                    return notification.payload


async def test_a_server_alone_rings_no_replica_until_one_listens(
    create_database: Callable[[], Awaitable[str]],
) -> None:
    """Alone on its database a server's appends send no NOTIFY (an outside listener hears
    only its own marker after them); once a replica has started, they do."""
    url = await create_database()
    first = AgentStoreServer(server_settings(url))
    await first.start()
    try:
        await asyncio.wait_for(first.listener.wait_for(lambda listener: listener.looks >= 1), 30)
        assert not first.listener.others_listening
        async with (
            await psycopg.AsyncConnection.connect(url, autocommit=True) as outside,
            grpc.aio.insecure_channel(f"127.0.0.1:{first.port}") as channel,
        ):
            await outside.execute("LISTEN agentstore_events")
            stub = SessionServiceStub(channel)
            created = await stub.CreateSession(pb.CreateSessionRequest(app_name="alone"))
            for n in range(3):
                await append(stub, message(created.id, [event(f"alone {n}")]))
            await outside.execute("NOTIFY agentstore_events, 'marker'")
            assert await next_ring(outside) == "marker"
            async with extra_server(url):
                await asyncio.wait_for(
                    first.listener.wait_for(lambda listener: listener.others_listening), 30
                )
                await append(stub, message(created.id, [event("with a replica")]))
                assert await next_ring(outside) == f"alone {created.id}"
    finally:
        await first.stop()


async def test_killing_the_listen_connection_loses_nothing(
    stub: SessionServiceStub, replica: SessionServiceStub, session_id: str, database_url: str
) -> None:
    call = replica.StreamEvents(pb.StreamEventsRequest(session_id=session_id, follow=True))
    await read_until(call, lambda received: any(r.caught_up for r in received))
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as admin:
        cursor = await admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'agentstore-listener' AND datname = current_database()"
        )
        assert (await cursor.fetchone())[0] >= 1  # type: ignore[index]
    for n in range(50):
        await append(stub, message(session_id, [event(str(n))]))
    received = await read_until(call, count_at_least(50))
    call.cancel()
    assert [e.seq for e in events_of(received)] == list(range(1, 51))


async def test_types_filter_the_live_part_too(stub: SessionServiceStub, session_id: str) -> None:
    call = stub.StreamEvents(
        pb.StreamEventsRequest(session_id=session_id, follow=True, types=["alert"])
    )
    await read_until(call, lambda received: any(r.caught_up for r in received))
    await append(stub, message(session_id, [event("a"), event("b", type="alert"), event("c")]))
    received = await read_until(call, count_at_least(1))
    call.cancel()
    assert [e.content.text for e in events_of(received)] == ["b"]


async def test_streaming_a_missing_session_is_not_found(stub: SessionServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in stub.StreamEvents(pb.StreamEventsRequest(session_id="absent")):
            pass
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    "request_fields",
    [{}, {"session_id": "s", "app_name": "a"}, {"app_name": "a", "resume_token": "!!"}],
)
async def test_a_stream_needs_exactly_one_scope_and_a_valid_token(
    stub: SessionServiceStub, request_fields: dict[str, str]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in stub.StreamEvents(pb.StreamEventsRequest(**request_fields)):
            pass
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_heartbeats_keep_an_idle_stream_alive_and_the_cap_is_enforced(
    database_url: str, app_name: str
) -> None:
    server = AgentStoreServer(
        server_settings(database_url, heartbeat_interval="50ms", max_streams=1)
    )
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = SessionServiceStub(channel)
            session = await stub.CreateSession(pb.CreateSessionRequest(app_name=app_name))
            call = stub.StreamEvents(pb.StreamEventsRequest(session_id=session.id, follow=True))
            received = await read_until(call, lambda got: any(r.heartbeat for r in got))
            assert received[0].caught_up
            second = stub.StreamEvents(pb.StreamEventsRequest(session_id=session.id))
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await second.read()
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert error_details(caught.value).reason == "TOO_MANY_STREAMS"
            call.cancel()
    finally:
        await server.stop()


async def test_shutdown_ends_streams_with_unavailable(database_url: str, app_name: str) -> None:
    server = AgentStoreServer(server_settings(database_url, shutdown_grace="30s"))
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = SessionServiceStub(channel)
        session = await stub.CreateSession(pb.CreateSessionRequest(app_name=app_name))
        call = stub.StreamEvents(pb.StreamEventsRequest(session_id=session.id, follow=True))
        await read_until(call, lambda got: any(r.caught_up for r in got))
        stopping = asyncio.create_task(server.stop())
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.read()
        await stopping
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_follower_whose_buffer_overflows_reads_the_table_and_loses_nothing(
    database_url: str, app_name: str
) -> None:
    async with extra_server(database_url, follower_buffer=1) as stub:
        session = await stub.CreateSession(pb.CreateSessionRequest(app_name=app_name))
        call = stub.StreamEvents(
            pb.StreamEventsRequest(session_id=session.id, follow=True, types=["kept"])
        )
        await read_until(call, lambda got: any(r.caught_up for r in got))
        # Many small batches while the follower reads nothing: its one-batch buffer
        # overflows and it must fall back to the table. Most events are filtered out.
        for n in range(200):
            kind = "kept" if n % 20 == 19 else "noise"
            await append(stub, message(session.id, [event(str(n), type=kind)]))
        received = await read_until(call, count_at_least(10))
        call.cancel()
        assert [e.content.text for e in events_of(received)] == [
            str(n) for n in range(200) if n % 20 == 19
        ]


async def wait_for_no_streams(server: AgentStoreServer, stub: SessionServiceStub) -> None:
    """Until the server has let go of every stream; each round trip gives it time to."""
    async with asyncio.timeout(30):
        while server.open_streams:
            await stub.GetStoreStats(pb.GetStoreStatsRequest())


async def test_cancel_and_deadline_free_the_stream(
    server: AgentStoreServer, stub: SessionServiceStub, session_id: str
) -> None:
    await wait_for_no_streams(server, stub)
    cancelled = stub.StreamEvents(pb.StreamEventsRequest(session_id=session_id, follow=True))
    await read_until(cancelled, lambda got: any(r.caught_up for r in got))
    assert server.open_streams == 1
    cancelled.cancel()
    await wait_for_no_streams(server, stub)

    timed = stub.StreamEvents(
        pb.StreamEventsRequest(session_id=session_id, follow=True), timeout=0.5
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in timed:
            pass
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await wait_for_no_streams(server, stub)
