"""What an operator sees of a running server from the database side."""

from __future__ import annotations

import asyncio
import collections
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import psycopg
import pytest

from agentstore.app import AgentStoreServer
from agentstore.client import AsyncClient, NotFound
from agentstore.v1 import session_service_pb2 as pb
from agentstore.v1.session_service_pb2_grpc import SessionServiceStub
from tests.conftest import server_settings
from tests.e2e.events_support import event
from tests.support import ServerProcess

ROOT = Path(__file__).resolve().parent.parent.parent


async def test_the_servers_connections_are_named_in_pg_stat_activity(
    server: AgentStoreServer, client: AsyncClient, database_url: str
) -> None:
    await client.get_store_stats()  # the pool has served a call
    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        cursor = await connection.execute(
            "SELECT DISTINCT application_name FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name LIKE 'agentstore%%'"
        )
        names = {row[0] for row in await cursor.fetchall()}
    assert names == {"agentstore-pool", "agentstore-listener"}


async def test_idle_followers_cost_the_database_next_to_nothing(
    create_database: Callable[[], Awaitable[str]],
) -> None:
    """200 followers of 200 sessions, nothing written: over ten polls of the safety net the
    server uses the database a dozen times (the poll's one query each, and a health ping or
    two), not once per follower per poll."""
    url = await create_database()
    server = AgentStoreServer(server_settings(url, live_poll_interval="100ms"))
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = SessionServiceStub(channel)
            calls = []
            for _ in range(200):
                session = await stub.CreateSession(pb.CreateSessionRequest(app_name="idle"))
                call = stub.StreamEvents(pb.StreamEventsRequest(session_id=session.id, follow=True))
                async for response in call:
                    if response.caught_up:
                        break
                calls.append(call)
            database, hub = server.database, server.hub
            before, polls = database.uses, hub.polls
            await asyncio.wait_for(hub.polled(polls + 10), 10)
            spent = database.uses - before
            for call in calls:
                call.cancel()
    finally:
        await server.stop()
    # Re-reading for every follower would be 200 x 10 = 2,000.
    assert spent < 50, spent


async def test_followers_opened_all_at_once_each_open_or_get_resource_exhausted(
    create_database: Callable[[], Awaitable[str]],
) -> None:
    """2,000 followers of 2,000 sessions opened at once on a server allowed 1,500 streams:
    1,500 open and 500 are refused RESOURCE_EXHAUSTED, none ends otherwise (grpc's own limit
    on calls not yet taken up once ended about 200 of them CANCELLED)."""
    url = await create_database()
    server = AgentStoreServer(server_settings(url, max_streams=1500))
    await server.start()
    try:
        # Two connections: one allows 2,000 calls at once (docs/operations.md).
        channels = [grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") for _ in range(2)]
        stubs = [SessionServiceStub(channel) for channel in channels]
        session_ids = []
        for _ in range(20):
            created = await asyncio.gather(
                *(
                    stubs[0].CreateSession(pb.CreateSessionRequest(app_name="many"))
                    for _ in range(100)
                )
            )
            session_ids += [session.id for session in created]
        calls = [
            stubs[number % 2].StreamEvents(
                pb.StreamEventsRequest(session_id=session_id, follow=True)
            )
            for number, session_id in enumerate(session_ids)
        ]

        async def outcome(call: object) -> str:
            try:
                async for response in call:  # type: ignore[attr-defined]
                    if response.caught_up:
                        return "open"
            except grpc.aio.AioRpcError as exc:
                return exc.code().name
            return "ended"

        outcomes = await asyncio.wait_for(asyncio.gather(*map(outcome, calls)), 120)
        for call in calls:
            call.cancel()
        for channel in channels:
            await channel.close()
    finally:
        await server.stop()
    assert collections.Counter(outcomes) == {"open": 1500, "RESOURCE_EXHAUSTED": 500}


async def test_json_logs_carry_each_calls_request_id(database_url: str) -> None:
    server = ServerProcess(
        "--database-url", database_url, "--log-format", "json", "--log-level", "DEBUG"
    )
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = SessionServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.GetSession(
                    pb.GetSessionRequest(session_id="no-such-session"),
                    metadata=(("x-request-id", "req-42"),),
                )
            await stub.GetStoreStats(pb.GetStoreStatsRequest())
    finally:
        assert await server.stop() == 0
    lines = [json.loads(line) for line in server.log.decode().splitlines() if line.strip()]
    calls = [line for line in lines if line["message"] == "call"]
    mine = [line for line in calls if line.get("request_id") == "req-42"]
    assert [(line["method"], line["code"]) for line in mine] == [("GetSession", "NOT_FOUND")]
    made = [line for line in calls if line["method"] == "GetStoreStats"]
    assert made[0]["code"] == "OK"
    assert len(made[0]["request_id"]) == 36  # one made for the call
    assert all({"time", "level", "logger"} <= line.keys() for line in lines)


async def test_prometheus_metrics_count_calls_messages_and_appends(database_url: str) -> None:
    server = AgentStoreServer(server_settings(database_url, metrics_listen="127.0.0.1:0"))
    await server.start()
    try:
        async with AsyncClient(f"127.0.0.1:{server.port}") as client:
            session = await client.create_session("metrics")
            await client.append(session.id, [{"type": "note"}, {"type": "note"}])
            await client.append_events([(session.id, [{"type": "note"}], None)] * 3)
            for _ in range(2):  # the second from memory
                assert len([e async for e in client.stream_events(session_id=session.id)]) == 5
            with pytest.raises(NotFound):
                await client.get_session("metrics-missing")
        reader, writer = await asyncio.open_connection("127.0.0.1", server.metrics_port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        response = (await reader.read()).decode()
        writer.close()
    finally:
        await server.stop()
    head, _, body = response.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 200")
    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line and not line.startswith("#")
    }
    service = 'grpc_service="agentstore.v1.SessionService"'
    get = f'grpc_type="unary",{service},grpc_method="GetSession"'
    assert values[f'grpc_server_handled_total{{{get},grpc_code="NOT_FOUND"}}'] >= 1
    events = f'grpc_type="client_stream",{service},grpc_method="AppendEvents"'
    assert values[f"grpc_server_msg_received_total{{{events}}}"] >= 3
    stream = f'grpc_type="bidi_stream",{service},grpc_method="AppendStream"'
    assert values[f"grpc_server_msg_sent_total{{{stream}}}"] >= 1
    assert values["agentstore_events_appended_total"] >= 5
    assert values["agentstore_append_commits_total"] >= 2
    assert values["agentstore_append_commit_seconds_count"] >= 2
    assert values["agentstore_listener_connects_total"] >= 1
    assert values["agentstore_pool_size"] >= 1
    assert values["agentstore_replay_events_from_memory_total"] >= 5
    assert values["agentstore_replay_cache_bytes"] > 0
    assert f'grpc_server_handling_seconds_bucket{{{get},le="+Inf"}}' in values


async def test_traces_continue_the_callers_trace_with_a_span_per_statement(
    database_url: str,
) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    server = AgentStoreServer(server_settings(database_url), tracer_provider=provider)
    await server.start()
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    traceparent = (("traceparent", f"00-{trace_id}-{parent_id}-01"),)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = SessionServiceStub(channel)
            session = await stub.CreateSession(
                pb.CreateSessionRequest(app_name="traced"), metadata=traceparent
            )
            appended = pb.AppendEventsRequest(session_id=session.id, events=[event("e1")])
            await stub.AppendEvents(iter([appended]), metadata=traceparent)
            listed = pb.ListEventsRequest(session_id=session.id, descending=True)
            await stub.ListEvents(listed, metadata=traceparent)
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.GetSession(pb.GetSessionRequest(session_id="nope"))
    finally:
        await server.stop()
    spans = exported.get_finished_spans()
    calls = {span.name.rsplit("/", 1)[-1]: span for span in spans if span.kind.name == "SERVER"}
    create, missing = calls["CreateSession"], calls["GetSession"]
    # The caller's trace goes on: same trace id, the caller's span as parent.
    assert format(create.context.trace_id, "032x") == trace_id
    assert create.parent is not None
    assert format(create.parent.span_id, "016x") == parent_id
    assert create.attributes is not None
    assert create.attributes["rpc.grpc.status_code"] == "OK"
    assert missing.attributes is not None
    assert missing.attributes["rpc.grpc.status_code"] == "NOT_FOUND"
    assert missing.parent is None  # no traceparent: a trace of its own

    # Each statement a call ran is a child span named after its query, whatever parts were
    # put in place in it.
    def statements(call: str) -> list[str]:
        return [
            span.name for span in spans
            if span.parent is not None and span.parent.span_id == calls[call].context.span_id
        ]  # fmt: skip

    assert statements("CreateSession") == ["sessions.insert_session"]
    # (and its ring for other replicas, if any listens on this database now)
    assert statements("AppendEvents") in (
        ["events.append_events"],
        ["events.append_events", "notifications.notify"],
    )
    # A page with events is one statement: it checks the session itself (queries/events.sql).
    assert statements("ListEvents") == ["events.list_events"]
    assert session.app_name == "traced"


async def test_tracing_is_not_loaded_when_off(database_url: str) -> None:
    code = (
        "import asyncio, sys\n"
        "from agentstore.app import AgentStoreServer\n"
        "from tests.conftest import server_settings\n"
        "async def main():\n"
        f"    server = AgentStoreServer(server_settings({database_url!r}))\n"
        "    await server.start()\n"
        "    await server.stop()\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, cwd=ROOT
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    assert out.strip() == b"[]"
