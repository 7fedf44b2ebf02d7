"""The fault suite: each scenario runs writers and followers through the SDK against two
`agentstore serve` replicas on a throwaway cluster, injects one fault, and checks the
client-side ledger against the store: every acknowledged event stored once at its seq, seqs
gapless, every session and feed follower given exactly what is stored, in order, across its
reconnects. `pytest -s` prints each scenario's counts and recovery time."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable

import grpc
import psycopg

from agentstore.store.embedded import EmbeddedPostgres
from agentstore.v1 import session_service_pb2 as pb
from agentstore.v1.session_service_pb2_grpc import SessionServiceStub
from tests.e2e.events_support import event, message
from tests.e2e.fault_support import (
    CommitCutter,
    HealthWatch,
    Load,
    cluster_processes,
    event_id_of,
    pg_ctl,
    report,
    signal_each,
    socket_path,
    start_cluster,
    stop_cluster,
    throwaway,
)
from tests.support import ServerProcess, with_database

__all__ = ["throwaway"]

# Short enough that a frozen database fails calls in seconds, as an operator would set it.
SERVER_FLAGS = ("--database-call-timeout", "2s", "--shutdown-grace", "2s")

Cluster = tuple[EmbeddedPostgres, str]


class Replicas:
    """Two servers on one database, stopped at the end (those still running)."""

    def __init__(self, url: str, *flags: str) -> None:
        self.servers = [
            ServerProcess("--database-url", url, *SERVER_FLAGS, *flags) for _ in range(2)
        ]
        self.addresses: list[str] = []

    async def __aenter__(self) -> Replicas:
        self.addresses = list(await asyncio.gather(*(s.start() for s in self.servers)))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for server in self.servers:
            assert server.process is not None
            if server.process.returncode is None:
                await server.stop()


async def run(
    url: str,
    scenario: str,
    fault: Callable[[Load, Replicas], Awaitable[float]],
    *flags: str,
) -> dict[str, int]:
    """Load on two replicas, the fault (which returns when the fault ended, as
    time.monotonic()), more load after it, and the ledger checked."""
    async with Replicas(url, *flags) as replicas:
        # The second replica outlives every scenario: its health tells of the database.
        health = HealthWatch(replicas.addresses[1])
        await health.start()
        try:
            load = Load(replicas.addresses)
            await load.start()
            began = time.monotonic()
            ended = await fault(load, replicas)
            first_append = await load.first_ack_after(ended)
            await load.acknowledged_at_least(load.acknowledged() + 40)
            serving_again = await health.serving_again_after(ended)
            counts = await load.finish()
        finally:
            await health.close()
    report(
        scenario, counts,
        not_serving_after_fault_began=health.went_not_serving_within(began),
        serving_after_fault_ended=serving_again,
        first_append_after_fault_ended=first_append,
    )  # fmt: skip
    assert counts["acknowledged"] >= 60
    return counts


async def test_postgres_restarted_under_load(throwaway: Cluster) -> None:
    cluster, url = throwaway

    async def restart(load: Load, replicas: Replicas) -> float:
        await pg_ctl(cluster, "-m", "fast", "restart")
        return time.monotonic()

    await run(url, "PostgreSQL restart", restart)


async def test_postgres_stopped_for_a_while_then_started(throwaway: Cluster) -> None:
    cluster, url = throwaway

    async def stop_start(load: Load, replicas: Replicas) -> float:
        await stop_cluster(cluster)
        # Down until every writer has had an append fail after the SDK's own resends.
        await load.retried_at_least(4)
        await start_cluster(cluster, url)
        return time.monotonic()

    counts = await run(url, "PostgreSQL stopped, then started", stop_start)
    assert counts["retried"] >= 4


async def test_every_backend_frozen_then_thawed(throwaway: Cluster) -> None:
    cluster, url = throwaway

    async def freeze(load: Load, replicas: Replicas) -> float:
        frozen = list(cluster_processes(cluster.pgdata))
        signal_each(frozen, signal.SIGSTOP)
        try:
            # Calls fail by the 2 s call timeout instead of hanging: frozen until a writer's
            # append has failed even after the SDK's own resends.
            await load.retried_at_least(1)
        finally:
            signal_each(frozen, signal.SIGCONT)
        return time.monotonic()

    counts = await run(url, "every backend frozen (SIGSTOP)", freeze)
    assert counts["retried"] >= 1


async def test_every_connection_terminated(throwaway: Cluster) -> None:
    _, url = throwaway

    async def terminate(load: Load, replicas: Replicas) -> float:
        async with await psycopg.AsyncConnection.connect(
            with_database(url, "postgres"), autocommit=True
        ) as admin:
            cursor = await admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = 'agentstore' AND pid <> pg_backend_pid()"
            )
            row = await cursor.fetchone()
            assert row is not None
            assert row[0] >= 4
        return time.monotonic()

    await run(url, "pg_terminate_backend of every connection", terminate)


async def test_connection_cut_after_commit_before_the_reply(throwaway: Cluster) -> None:
    """The ambiguous commit: the append committed, its reply never reached the server. The
    client is told UNAVAILABLE, resends the same event id, and is acknowledged with the seq
    stored the first time; nothing is stored twice."""
    _, url = throwaway
    async with CommitCutter(socket_path(url)) as cutter:
        proxied = f"postgresql://postgres@127.0.0.1:{cutter.port}/agentstore"
        cut_event = ""

        async def cut(load: Load, replicas: Replicas) -> float:
            nonlocal cut_event
            session_id = load.ledger.sessions[0]
            # A few appends ahead of the writer, so that its statement is the one cut.
            cut_event = event_id_of(session_id, len(load.ledger.acknowledged[session_id]) + 3)
            cutter.arm(f'"{cut_event}"'.encode())
            await asyncio.wait_for(cutter.cut.wait(), 30)
            return time.monotonic()

        cut_load: list[Load] = []

        async def cut_and_remember(load: Load, replicas: Replicas) -> float:
            cut_load.append(load)
            return await cut(load, replicas)

        await run(proxied, "connection cut after COMMIT", cut_and_remember)
        load = cut_load[0]
        # (The SDK resent it itself, so the writer saw no error.)
        assert cut_event in load.ledger.acknowledged[load.ledger.sessions[0]]


async def test_one_of_two_replicas_killed_with_sigkill(throwaway: Cluster) -> None:
    _, url = throwaway

    async def kill(load: Load, replicas: Replicas) -> float:
        process = replicas.servers[0].process
        assert process is not None
        process.send_signal(signal.SIGKILL)
        await process.wait()
        return time.monotonic()

    await run(url, "one of two replicas kill -9", kill)


async def test_one_of_two_replicas_stopped_with_sigterm_under_load(throwaway: Cluster) -> None:
    _, url = throwaway

    async def terminate(load: Load, replicas: Replicas) -> float:
        assert await replicas.servers[0].stop() == 0
        return time.monotonic()

    await run(url, "one of two replicas SIGTERM", terminate)


async def test_stalled_streams_do_not_exhaust_the_pool(throwaway: Cluster) -> None:
    """Followers that never read a long replay (held by flow control), more of them than the
    pool has connections: appends, reads and new followers go on."""
    _, url = throwaway

    async def stall(load: Load, replicas: Replicas) -> float:
        async with grpc.aio.insecure_channel(replicas.addresses[0]) as channel:
            stub = SessionServiceStub(channel)
            session = await stub.CreateSession(pb.CreateSessionRequest(app_name="stalled"))
            big = [event("x" * 1000) for _ in range(500)]
            # A call each: ten such messages in one call commit in one statement, 5 MB, which
            # on a loaded machine outlasted the 2 s these servers give a database call.
            for _ in range(10):
                await stub.AppendEvents(iter([message(session.id, big)]))
            stalled = [
                stub.StreamEvents(pb.StreamEventsRequest(session_id=session.id, follow=True))
                for _ in range(12)
            ]
            for call in stalled:
                await call.wait_for_connection()
            acknowledged = load.acknowledged()
            await load.acknowledged_at_least(acknowledged + 40, within=30)
            got = await stub.GetSession(pb.GetSessionRequest(session_id=session.id), timeout=5)
            assert got.last_seq == 5000
            for call in stalled:
                call.cancel()
        return time.monotonic()

    await run(url, "pool (4 connections) and 12 stalled streams", stall, "--pool-max-size", "4")


async def test_a_feed_crossing_a_power_of_ten_in_transaction_ids_stays_in_commit_order(
    throwaway: Cluster,
) -> None:
    """Feeds are ordered by transaction id. Ordered as text, '1000' came before '999': a
    follower skipped ahead and later got the skipped events, and the ones after them twice
    (found by the stalled-streams scenario, and once in an earlier SIGTERM run)."""
    _, url = throwaway
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as db:
        cursor = await db.execute("SELECT pg_current_xact_id()::text::bigint")
        row = await cursor.fetchone()
        assert row is not None
        boundary = 10 ** len(str(row[0]))  # the next power of ten
        for _ in range(boundary - row[0] - 30):  # spend transaction ids up to near it
            await db.execute("SELECT pg_current_xact_id()")
    async with (
        Replicas(url) as replicas,
        grpc.aio.insecure_channel(replicas.addresses[0]) as channel,
    ):
        stub = SessionServiceStub(channel)
        session = await stub.CreateSession(pb.CreateSessionRequest(app_name="crossing"))
        for number in range(60):  # one transaction each, across the boundary
            await stub.AppendEvents(iter([message(session.id, [event(str(number))])]))
        feed = [
            (e.seq, e.content.text)
            async for response in stub.StreamEvents(pb.StreamEventsRequest(app_name="crossing"))
            for e in response.events
        ]
    assert feed == [(number + 1, str(number)) for number in range(60)]
