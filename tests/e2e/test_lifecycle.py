"""The server as an operator runs it: `agentstore serve` in its own process."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc
from psycopg import sql

from agentstore.store.migrator import load_migrations
from agentstore.v1 import session_service_pb2 as pb
from agentstore.v1.session_service_pb2_grpc import SessionServiceStub
from tests.e2e.events_support import append, event, message
from tests.support import ServerProcess, error_details, run_agentstore, with_database

CreateDatabase = Callable[[], Awaitable[str]]


async def create_and_read_back(address: str, session_id: str | None = None) -> str:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = SessionServiceStub(channel)
        if session_id is None:
            session = await stub.CreateSession(pb.CreateSessionRequest(app_name="restart"))
            return session.id
        session = await stub.GetSession(pb.GetSessionRequest(session_id=session_id))
        return session.id


async def test_embedded_database_keeps_data_across_restarts(scratch_dir: Path) -> None:
    first = ServerProcess("--data-dir", str(scratch_dir))
    session_id = await create_and_read_back(await first.start())
    assert await first.stop() == 0, first.log.decode()

    second = ServerProcess("--data-dir", str(scratch_dir))
    assert await create_and_read_back(await second.start(), session_id) == session_id
    assert await second.stop() == 0, second.log.decode()
    assert b"embedded postgres stopped" in second.log


async def test_external_database_keeps_data_across_restarts(
    create_database: CreateDatabase,
) -> None:
    url = await create_database()
    first = ServerProcess("--database-url", url)
    session_id = await create_and_read_back(await first.start())
    assert await first.stop() == 0, first.log.decode()

    second = ServerProcess("--database-url", url)
    assert await create_and_read_back(await second.start(), session_id) == session_id
    assert await second.stop() == 0, second.log.decode()


async def test_two_servers_starting_at_once_on_an_empty_database_both_serve(
    create_database: CreateDatabase,
) -> None:
    url = await create_database()
    servers = [ServerProcess("--database-url", url) for _ in range(2)]
    addresses = await asyncio.gather(*(server.start() for server in servers))
    session_id = await create_and_read_back(addresses[0])
    assert await create_and_read_back(addresses[1], session_id) == session_id
    assert [await server.stop() for server in servers] == [0, 0]
    async with await psycopg.AsyncConnection.connect(url) as connection:
        cursor = await connection.execute("SELECT count(*) FROM schema_migrations")
        assert await cursor.fetchone() == (len(load_migrations()),)


async def test_sigterm_reports_not_serving_drains_in_flight_calls_and_exits_zero(
    create_database: CreateDatabase,
) -> None:
    url = await create_database()
    server = ServerProcess("--database-url", url, "--shutdown-grace", "20s")
    address = await server.start()
    session_id = await create_and_read_back(address)
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING

        # An append stream that has had its first request acknowledged is a call the server
        # is serving: it must be let finish after SIGTERM, taking more requests meanwhile.
        outgoing: asyncio.Queue[pb.AppendStreamRequest | None] = asyncio.Queue()

        async def requests() -> AsyncIterator[pb.AppendStreamRequest]:
            while (request := await outgoing.get()) is not None:
                yield request

        call = SessionServiceStub(channel).AppendStream(requests())
        acks = aiter(call)
        outgoing.put_nowait(pb.AppendStreamRequest(session_id=session_id, events=[event("a")]))
        assert list((await anext(acks)).seqs) == [1]
        assert server.process is not None
        server.process.terminate()
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        outgoing.put_nowait(pb.AppendStreamRequest(session_id=session_id, events=[event("b")]))
        assert list((await anext(acks)).seqs) == [2]
        outgoing.put_nowait(None)
        assert [ack async for ack in acks] == []
        assert await call.code() == grpc.StatusCode.OK
    assert await server.stop() == 0, server.log.decode()
    assert b"agentstore stopped" in server.log


class HeldOpen:
    """Calls held open on one server when it is told to stop: append streams with one
    request committed and more to come, and followers of the AppendEvents calls' sessions.
    `outcomes` are the codes they end with."""

    def __init__(self, stub: SessionServiceStub, calls_of_each_kind: int) -> None:
        self.stub = stub
        self.count = calls_of_each_kind
        self.never: asyncio.Event = asyncio.Event()  # the clients' next request never comes
        self.acknowledged: dict[str, list[int]] = {}  # AppendStream: session -> acked seqs
        self.calls: list[asyncio.Task[tuple[grpc.StatusCode, str]]] = []

    async def requests(self, first: object) -> AsyncIterator[object]:
        yield first
        await self.never.wait()

    async def open(self) -> None:
        """Returns once every call holds committed events and is waiting for more."""
        for _ in range(self.count):
            events_session = (
                await self.stub.CreateSession(pb.CreateSessionRequest(app_name="held"))
            ).id
            follower = self.stub.StreamEvents(
                pb.StreamEventsRequest(session_id=events_session, follow=True)
            )
            caught_up = aiter(follower)
            assert (await anext(caught_up)).caught_up
            appending = self.stub.AppendEvents(self.requests(message(events_session, [event("a")])))
            self.calls.append(asyncio.create_task(self.outcome(appending)))
            assert [e.seq for e in (await anext(caught_up)).events] == [1]  # committed
            self.calls.append(asyncio.create_task(self.outcome(follower)))

            stream_session = (
                await self.stub.CreateSession(pb.CreateSessionRequest(app_name="held"))
            ).id
            acking = self.stub.AppendStream(
                self.requests(
                    pb.AppendStreamRequest(session_id=stream_session, events=[event("a")])
                )
            )
            self.acknowledged[stream_session] = list((await anext(aiter(acking))).seqs)
            self.calls.append(asyncio.create_task(self.outcome(acking)))

    @staticmethod
    async def outcome(call: object) -> tuple[grpc.StatusCode, str]:
        """The call's code and ErrorInfo reason."""
        try:
            if hasattr(call, "__aiter__"):
                async for _ in call:  # type: ignore[attr-defined]
                    pass
            else:
                await call  # type: ignore[misc]
        except grpc.aio.AioRpcError as exc:
            details = error_details(exc)
            return details.code, details.reason
        return grpc.StatusCode.OK, ""


async def test_calls_open_when_the_grace_period_ends_get_unavailable_from_servers_stopping_at_once(
    create_database: CreateDatabase,
) -> None:
    url = await create_database()
    servers = [ServerProcess("--database-url", url, "--shutdown-grace", "2s") for _ in range(3)]
    addresses = await asyncio.gather(*(server.start() for server in servers))
    channels = [grpc.aio.insecure_channel(address) for address in addresses]
    held = [HeldOpen(SessionServiceStub(channel), 5) for channel in channels]
    try:
        await asyncio.gather(*(calls.open() for calls in held))
        for server in servers:
            assert server.process is not None
            server.process.terminate()
        codes = await asyncio.wait_for(
            asyncio.gather(*(call for calls in held for call in calls.calls)), 30
        )
    finally:
        for calls in held:
            calls.never.set()
        for channel in channels:
            await channel.close()
    # Every call (15 held AppendEvents, 15 AppendStream, 15 followers) ended by the server
    # itself (the reason), not cancelled by grpc when the grace ran out (that comes without
    # one, as UNAVAILABLE or, now and then, INTERNAL).
    assert codes == [(grpc.StatusCode.UNAVAILABLE, "SERVER_SHUTTING_DOWN")] * 45
    for server in servers:
        assert await server.exited() == 0, server.log.decode()
    async with await psycopg.AsyncConnection.connect(url) as connection:
        for calls in held:
            for session_id, seqs in calls.acknowledged.items():
                cursor = await connection.execute(
                    "SELECT seq FROM events WHERE session_id = %s ORDER BY seq", (session_id,)
                )
                assert [seq for (seq,) in await cursor.fetchall()] == seqs == [1]


async def test_an_unreachable_database_stops_start_up_with_a_clear_message() -> None:
    code, _, stderr = await run_agentstore(
        "serve", "--listen", "127.0.0.1:0",
        "--database-url", "postgresql://postgres@127.0.0.1:1/none", "--database-timeout", "2s",
    )  # fmt: skip
    assert code == 1
    assert b"agentstore: cannot reach the database" in stderr
    assert b"Traceback" not in stderr


async def test_a_bad_setting_stops_start_up_naming_the_flag() -> None:
    code, _, stderr = await run_agentstore("serve", "--listen", "nowhere")
    assert code == 1
    assert b"agentstore: invalid --listen / AGENTSTORE_LISTEN" in stderr


async def test_migrate_command_applies_and_reports(create_database: CreateDatabase) -> None:
    code, stdout, _ = await run_agentstore("migrate", "--database-url", await create_database())
    assert code == 0
    assert stdout.strip() == f"applied {len(load_migrations())} migration(s)".encode()


async def test_a_taken_port_stops_start_up_with_a_clear_message(
    create_database: CreateDatabase,
) -> None:
    url = await create_database()
    first = ServerProcess("--database-url", url)
    address = await first.start()
    try:
        code, _, stderr = await run_agentstore("serve", "--listen", address, "--database-url", url)
        assert code == 1
        assert f"agentstore: cannot listen on {address}".encode() in stderr
        assert b"Traceback" not in stderr
    finally:
        assert await first.stop() == 0


async def test_events_from_another_cluster_stop_start_up_until_reset(
    create_database: CreateDatabase,
) -> None:
    url = await create_database()
    first = ServerProcess("--database-url", url)
    async with grpc.aio.insecure_channel(await first.start()) as channel:
        stub = SessionServiceStub(channel)
        session = await stub.CreateSession(pb.CreateSessionRequest(app_name="moved"))
        await append(stub, message(session.id, [event("made before the move")]))
    assert await first.stop() == 0, first.log.decode()
    # As after restoring a logical dump into a younger cluster: ids it has not reached yet.
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        await connection.execute("UPDATE events SET tx_id = '999999999999'")

    code, _, stderr = await run_agentstore(
        "serve", "--listen", "127.0.0.1:0", "--database-url", url
    )  # fmt: skip
    assert code == 1
    assert b"transaction ids from another PostgreSQL cluster" in stderr
    assert b"Traceback" not in stderr

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        await connection.execute("UPDATE events SET tx_id = '3'")  # the documented fix
    second = ServerProcess("--database-url", url)
    async with grpc.aio.insecure_channel(await second.start()) as channel:
        feed = SessionServiceStub(channel).StreamEvents(pb.StreamEventsRequest(app_name="moved"))
        texts = [event.content.text async for response in feed for event in response.events]
    assert await second.stop() == 0, second.log.decode()
    assert texts == ["made before the move"]


def as_role(url: str, role: str) -> str:
    """`url` connecting as `role` (trust authentication: no password)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{role}@{host}"))


async def test_a_server_runs_as_a_role_that_may_only_read_and_write_rows(
    postgres_admin_url: str,
) -> None:
    suffix = uuid.uuid4().hex[:8]
    owner, server_role, name = f"as_owner_{suffix}", f"as_server_{suffix}", f"as_lp_{suffix}"
    admin = await psycopg.AsyncConnection.connect(postgres_admin_url, autocommit=True)
    try:
        await admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(owner)))
        await admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(server_role)))
        await admin.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(owner)
            )
        )
        database_url = with_database(postgres_admin_url, name)
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as db:
            await db.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
            await db.execute(
                sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {}").format(sql.Identifier(owner))
            )
        code, _, stderr = await run_agentstore(
            "migrate", "--database-url", as_role(database_url, owner)
        )
        assert code == 0, stderr.decode()
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as db:
            role = sql.Identifier(server_role)
            for grant in (
                "GRANT USAGE ON SCHEMA public TO {}",
                "GRANT SELECT, INSERT, UPDATE, DELETE"
                " ON sessions, events, app_states, user_states, api_keys TO {}",
                "GRANT SELECT ON schema_migrations TO {}",
                "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {}",
            ):
                await db.execute(sql.SQL(grant).format(role))  # type: ignore[arg-type]
        server = ServerProcess("--database-url", as_role(database_url, server_role))
        address = await server.start()
        async with grpc.aio.insecure_channel(address) as channel:
            stub = SessionServiceStub(channel)
            session = await stub.CreateSession(pb.CreateSessionRequest(app_name="least"))
            await append(stub, message(session.id, [event("written by the server role")]))
            # And read back by every path, the kept encoding's too.
            replay = [
                e.content.text
                async for r in stub.StreamEvents(pb.StreamEventsRequest(session_id=session.id))
                for e in r.events
            ]
            page = await stub.ListEvents(pb.ListEventsRequest(session_id=session.id))
            feed = stub.StreamEvents(pb.StreamEventsRequest(app_name="least"))
            fed = [e.content.text async for r in feed for e in r.events]
            assert replay == [e.content.text for e in page.events] == fed
            assert replay == ["written by the server role"]
        assert await server.stop() == 0, server.log.decode()
    finally:
        await admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        for role_name in (server_role, owner):
            await admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role_name)))
        await admin.close()
