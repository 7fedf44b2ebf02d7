"""Faults on a throwaway PostgreSQL cluster of the test's own (never the shared one)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentstore.app import AgentStoreServer
from agentstore.client import AsyncClient, DeadlineExceeded, Unavailable
from agentstore.store.embedded import EmbeddedPostgres
from tests.conftest import server_settings
from tests.e2e.fault_support import cluster_processes, signal_each, throwaway
from tests.support import with_database

__all__ = ["throwaway"]  # the fixture, used by name

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def next_status(watch: object, wanted: int) -> None:
    async for response in watch:  # type: ignore[attr-defined]
        if response.status == wanted:
            return


async def test_health_follows_a_frozen_database_within_seconds(
    throwaway: tuple[EmbeddedPostgres, str],
) -> None:
    cluster, url = throwaway
    server = AgentStoreServer(server_settings(url, health_check_interval="1s"))
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
            await asyncio.wait_for(next_status(watch, SERVING), 10)
            frozen = list(cluster_processes(cluster.pgdata))
            signal_each(frozen, signal.SIGSTOP)
            started = asyncio.get_running_loop().time()
            await asyncio.wait_for(next_status(watch, NOT_SERVING), 10)
            assert asyncio.get_running_loop().time() - started < 5
            signal_each(frozen, signal.SIGCONT)
            started = asyncio.get_running_loop().time()
            await asyncio.wait_for(next_status(watch, SERVING), 10)
            assert asyncio.get_running_loop().time() - started < 3
            watch.cancel()
    finally:
        await server.stop()


async def test_calls_on_a_frozen_database_fail_unavailable_and_writes_resend_safely(
    throwaway: tuple[EmbeddedPostgres, str],
) -> None:
    cluster, url = throwaway
    server = AgentStoreServer(server_settings(url, database_call_timeout="2s"))
    await server.start()
    try:
        async with AsyncClient(f"127.0.0.1:{server.port}", timeout=None, retries=0) as client:
            session = await client.create_session("faults")
            await client.append(session.id, {"type": "note", "event_id": "before"})
            frozen = list(cluster_processes(cluster.pgdata))
            signal_each(frozen, signal.SIGSTOP)
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(Unavailable):
                await client.get_session(session.id)  # no deadline of its own
            with pytest.raises(Unavailable):
                await client.append_events(
                    [(session.id, [{"type": "note", "event_id": "x"}], None)]
                )
            assert loop.time() - started < 20
            signal_each(frozen, signal.SIGCONT)
            # Resending what was not acknowledged is safe: it is stored once.
            await client.append_events([(session.id, [{"type": "note", "event_id": "x"}], None)])
            ids = [event.event_id async for event in client.list_events(session.id)]
            assert ids == ["before", "x"]
    finally:
        await server.stop()


async def test_a_call_held_by_a_frozen_database_gets_unavailable_when_the_server_stops(
    throwaway: tuple[EmbeddedPostgres, str],
) -> None:
    cluster, url = throwaway
    server = AgentStoreServer(
        server_settings(url, database_call_timeout="60s", shutdown_grace="1s")
    )
    await server.start()
    stopped = False
    try:
        async with AsyncClient(f"127.0.0.1:{server.port}", timeout=None, retries=0) as client:
            session = await client.create_session("faults")
            frozen = list(cluster_processes(cluster.pgdata))
            signal_each(frozen, signal.SIGSTOP)
            try:
                held = asyncio.create_task(client.get_session(session.id))
                await asyncio.wait_for(server.open_calls.reach(1), 10)
                loop = asyncio.get_running_loop()
                started = loop.time()
                stopping = asyncio.create_task(server.stop())
                stopped = True
                # Ended by the server when the grace ran out, not after the 60 s the
                # database call may take, nor cancelled by grpc (no reason then).
                with pytest.raises(Unavailable) as ended:
                    await held
                assert ended.value.reason == "SERVER_SHUTTING_DOWN", repr(ended.value)
                assert loop.time() - started < 3
            finally:
                signal_each(frozen, signal.SIGCONT)
            await stopping
    finally:
        if not stopped:
            await server.stop()


async def test_an_awaited_append_ends_at_the_clients_timeout_on_a_frozen_database(
    throwaway: tuple[EmbeddedPostgres, str],
) -> None:
    cluster, url = throwaway
    server = AgentStoreServer(server_settings(url, database_call_timeout="30s"))
    await server.start()
    try:
        async with AsyncClient(f"127.0.0.1:{server.port}", timeout=2.0) as client:
            session = await client.create_session("faults")
            frozen = list(cluster_processes(cluster.pgdata))
            signal_each(frozen, signal.SIGSTOP)
            try:
                loop = asyncio.get_running_loop()
                started = loop.time()
                with pytest.raises(DeadlineExceeded):
                    await client.append(session.id, {"type": "note", "event_id": "late"})
                assert loop.time() - started < 4
            finally:
                signal_each(frozen, signal.SIGCONT)
            # Sent again once the database is back: stored once.
            await client.append(session.id, {"type": "note", "event_id": "late"})
            ids = [event.event_id async for event in client.list_events(session.id)]
            assert ids == ["late"]
    finally:
        await server.stop()


@contextlib.contextmanager
def logged(logger: str, starting: str, count: int) -> Iterator[asyncio.Event]:
    """An event set once `logger` has logged `count` messages starting with `starting`."""
    loop = asyncio.get_running_loop()
    reached = asyncio.Event()
    seen = 0

    class Counter(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            nonlocal seen
            if record.getMessage().startswith(starting):
                seen += 1
                if seen >= count:
                    loop.call_soon_threadsafe(reached.set)

    watched = logging.getLogger(logger)
    handler = Counter(logging.WARNING)
    watched.addHandler(handler)
    try:
        yield reached
    finally:
        watched.removeHandler(handler)


async def test_an_awaited_append_rides_out_a_short_database_freeze(
    throwaway: tuple[EmbeddedPostgres, str],
) -> None:
    """The SDK sends an append the server answers UNAVAILABLE again (same event ids): an
    agent's awaited append survives a freeze shorter than its retries, stored once."""
    cluster, url = throwaway
    server = AgentStoreServer(server_settings(url, database_call_timeout="1s"))
    await server.start()
    try:
        async with AsyncClient(f"127.0.0.1:{server.port}", timeout=None) as client:
            session = await client.create_session("faults")
            frozen = list(cluster_processes(cluster.pgdata))
            with logged("agentstore.store.database", "database call timed out", 1) as failed:
                signal_each(frozen, signal.SIGSTOP)
                try:
                    appending = asyncio.create_task(
                        client.append(session.id, {"type": "note", "event_id": "through"})
                    )
                    await asyncio.wait_for(failed.wait(), 20)  # a first attempt failed
                finally:
                    signal_each(frozen, signal.SIGCONT)
            result = await asyncio.wait_for(appending, 30)
            assert result.seqs == (1,)
            ids = [event.event_id async for event in client.list_events(session.id)]
            assert ids == ["through"]
    finally:
        await server.stop()


async def test_appends_work_again_within_seconds_of_the_database_returning(
    throwaway: tuple[EmbeddedPostgres, str],
) -> None:
    _, url = throwaway
    admin = with_database(url, "postgres")
    # One connection at most: one chain of reconnection attempts, counted below.
    server = AgentStoreServer(
        server_settings(url, database_call_timeout="2s", pool_min_size=1, pool_max_size=1)
    )
    await server.start()
    try:
        async with AsyncClient(f"127.0.0.1:{server.port}", timeout=None, retries=0) as client:
            session = await client.create_session("faults")
            async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as db:
                # The outage: no new connection is accepted and every existing one is cut.
                await db.execute("ALTER DATABASE agentstore ALLOW_CONNECTIONS false")
                await db.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = 'agentstore'"
                )
                # The outage lasts until the pool has failed to reconnect four times (at about
                # 1, 2, 4 and 8 s): a delay doubling from there left appends failing 8 s after
                # the return.
                with logged("psycopg.pool", "error connecting", 4) as enough:
                    await asyncio.wait_for(enough.wait(), 60)
                await db.execute("ALTER DATABASE agentstore ALLOW_CONNECTIONS true")
            back = asyncio.get_running_loop().time()
            result = await client.append(session.id, {"type": "note", "event_id": "after"})
            assert asyncio.get_running_loop().time() - back < 3
            assert result.seqs == (1,)
    finally:
        await server.stop()
