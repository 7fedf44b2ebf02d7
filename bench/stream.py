"""StreamEvents: replay speed, commit-to-follower latency across two replicas, and the memory
of idle followers.

    python bench/stream.py [--database-url URL] [--followers 1,100,1000] [--seconds 5]

Prints the replay rate of a 100,000-event session next to reading the same rows with psycopg
alone in the same run; send-to-receive latency p50/p99 (it includes the append's commit)
with 1, 100 and 1,000 followers spread over 2 replicas while writers append 200 events/s
in total over 10 sessions, each next to the same fan-out from two bare grpc.aio servers
(bench/grpc_baseline.py: no database, no writer); and a server's memory with 1,000 idle
followers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import grpc
import psycopg

from agentstore.v1 import event_pb2
from agentstore.v1 import session_service_pb2 as pb
from agentstore.v1.session_service_pb2_grpc import SessionServiceStub
from bench.common import (
    ROOT,
    Stopwatch,
    parser,
    rate,
    running_grpc_baseline,
    running_server,
    scratch_database,
)

REPLAY_EVENTS = 100_000
TEXT = "The agent compared the invoices with the plan and drafted a refund for the customer. " * 2


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def load_session(stub: SessionServiceStub, events: int) -> str:
    session = await stub.CreateSession(pb.CreateSessionRequest(app_name="bench", user_id="u"))
    template = event_pb2.Event(
        type="message_complete", author="assistant",
        content=event_pb2.Content(role="assistant", text=TEXT),
    )  # fmt: skip
    template.data.update({"content": "refund drafted", "tokens": 42})

    def batches() -> list[pb.AppendEventsRequest]:
        result = []
        for start in range(0, events, 1000):
            batch = []
            for _ in range(min(1000, events - start)):
                item = event_pb2.Event()
                item.CopyFrom(template)
                batch.append(item)
            result.append(pb.AppendEventsRequest(session_id=session.id, events=batch))
        return result

    await stub.AppendEvents(iter(batches()))
    return session.id


async def replay(stub: SessionServiceStub, session_id: str) -> float:
    count = 0
    with Stopwatch() as watch:
        async for response in stub.StreamEvents(pb.StreamEventsRequest(session_id=session_id)):
            count += len(response.events)
    assert count == REPLAY_EVENTS, count
    return rate(count, watch.seconds)


async def psycopg_read(database_url: str, session_id: str) -> float:
    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        with Stopwatch() as watch:
            cursor = await connection.execute(
                "SELECT * FROM events WHERE session_id = %s ORDER BY seq", (session_id,)
            )
            rows = await cursor.fetchall()
    assert len(rows) == REPLAY_EVENTS
    return rate(len(rows), watch.seconds)


async def write_at_rate(
    address: str, sessions: list[str], per_second: float, seconds: float
) -> int:
    """Append one event per message on one stream, round robin over the sessions, at a steady
    rate (not waiting for earlier commits, as an agent streaming tokens would); each event's
    text is its send time (time.perf_counter: CLOCK_MONOTONIC, the same clock in every
    process of this machine). Returns how many it sent."""
    async with grpc.aio.insecure_channel(address) as channel:
        call = SessionServiceStub(channel).AppendEvents()
        started = time.perf_counter()
        number = 0
        while time.perf_counter() - started < seconds:
            await call.write(
                pb.AppendEventsRequest(
                    session_id=sessions[number % len(sessions)],
                    events=[
                        event_pb2.Event(
                            type="token", content=event_pb2.Content(text=repr(time.perf_counter()))
                        )
                    ],
                )
            )
            number += 1
            await asyncio.sleep(max(0.0, started + number / per_second - time.perf_counter()))
        await call.done_writing()
        response = await call
        return int(response.appended)


class Followers:
    """`count` followers of `sessions`, spread evenly over the replicas and the sessions,
    recording each event's delay from its send time (its text) to its arrival."""

    def __init__(self, replicas: list[SessionServiceStub], sessions: list[str], count: int):
        self.delays: list[float] = []
        self.recording = True
        self._count = count
        self._ready = 0
        self._all_ready = asyncio.Event()
        self._tasks = [
            asyncio.create_task(
                self._follow(replicas[n % len(replicas)], sessions[n % len(sessions)])
            )
            for n in range(count)
        ]

    async def _follow(self, stub: SessionServiceStub, session_id: str) -> None:
        call = stub.StreamEvents(pb.StreamEventsRequest(session_id=session_id, follow=True))
        async for response in call:
            now = time.perf_counter()
            if response.caught_up:
                self._ready += 1
                if self._ready == self._count:
                    self._all_ready.set()
            if self.recording:
                self.delays.extend(now - float(item.content.text) for item in response.events)

    async def ready(self) -> None:
        await self._all_ready.wait()

    async def stop(self) -> tuple[float, float, int]:
        """p50 and p99 in ms, and how many deliveries were recorded."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        ordered = sorted(self.delays)
        p50 = statistics.median(ordered) * 1000
        p99 = ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000
        return p50, p99, len(ordered)


async def latency(
    writer_address: str, replicas: list[SessionServiceStub], followers: int, seconds: float
) -> tuple[float, float, int, float]:
    sessions = [
        (await replicas[0].CreateSession(pb.CreateSessionRequest(app_name="lat"))).id
        for _ in range(10)
    ]
    watching = Followers(replicas, sessions, followers)
    await watching.ready()
    # The writer runs in its own process, so that the followers' work does not slow it.
    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.stream", "--write-to", writer_address,
        "--sessions", ",".join(sessions), "--seconds", str(seconds),
        stdout=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    output, _ = await writer.communicate()
    sent = int(output.decode().strip())
    expected = sent * followers // len(sessions)
    async with asyncio.timeout(60):
        while len(watching.delays) < expected:  # noqa: ASYNC110 - a benchmark: wait for stragglers
            await asyncio.sleep(0.05)
    p50, p99, delivered = await watching.stop()
    return p50, p99, delivered, sent / seconds


async def bare_grpc_latency(followers: int, seconds: float) -> tuple[float, float, int]:
    """The same fan-out from two bench/grpc_baseline.py servers, which make the events
    themselves (no database, no writer): what grpc.aio alone allows on this machine."""
    options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    async with (
        running_grpc_baseline() as first,
        running_grpc_baseline() as second,
        grpc.aio.insecure_channel(first, options=options) as channel_a,
        grpc.aio.insecure_channel(second, options=options) as channel_b,
    ):
        stubs = [SessionServiceStub(channel_a), SessionServiceStub(channel_b)]
        watching = Followers(stubs, [f"s{n}" for n in range(10)], followers)
        await watching.ready()
        watching.delays.clear()
        await asyncio.sleep(seconds)  # the measuring window
        watching.recording = False
        return await watching.stop()


async def idle_memory(stub: SessionServiceStub, pid: int, followers: int) -> tuple[float, float]:
    sessions = [
        (await stub.CreateSession(pb.CreateSessionRequest(app_name="idle"))).id
        for _ in range(followers)
    ]
    before = rss_mib(pid)
    ready = asyncio.Event()
    caught_up = 0

    async def follow(session_id: str) -> None:
        nonlocal caught_up
        async for response in stub.StreamEvents(
            pb.StreamEventsRequest(session_id=session_id, follow=True)
        ):
            if response.caught_up:
                caught_up += 1
                if caught_up == followers:
                    ready.set()

    tasks = [asyncio.create_task(follow(s)) for s in sessions]
    await ready.wait()
    after = rss_mib(pid)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return before, after


async def main() -> None:
    arguments = parser(__doc__ or "")
    arguments.add_argument("--followers", default="1,100,1000")
    arguments.add_argument("--seconds", type=float, default=5.0)
    arguments.add_argument("--write-to", help=argparse.SUPPRESS)
    arguments.add_argument("--sessions", help=argparse.SUPPRESS)
    options = arguments.parse_args()
    if options.write_to:
        sessions = options.sessions.split(",")
        print(await write_at_rate(options.write_to, sessions, 200, options.seconds))
        return
    counts = [int(n) for n in options.followers.split(",")]
    options_grpc = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    async with (
        scratch_database(options.database_url) as database_url,
        running_server(database_url, "--max-streams", "100000") as first,
        running_server(database_url, "--max-streams", "100000") as second,
        grpc.aio.insecure_channel(first.address, options=options_grpc) as channel_a,
        grpc.aio.insecure_channel(second.address, options=options_grpc) as channel_b,
    ):
        stub_a, stub_b = SessionServiceStub(channel_a), SessionServiceStub(channel_b)
        session_id = await load_session(stub_a, REPLAY_EVENTS)
        await replay(stub_a, session_id)  # warm the cache
        replay_rate = await replay(stub_a, session_id)
        psycopg_rate = await psycopg_read(database_url, session_id)
        print(f"replay of a {REPLAY_EVENTS:,}-event session:  {replay_rate:10,.0f} events/s")
        print(f"same rows read with psycopg alone:    {psycopg_rate:10,.0f} events/s"
              f"  (replay is {replay_rate / psycopg_rate:.2f} of it)")  # fmt: skip
        processes = {"replica A": first.process.pid, "replica B": second.process.pid,
                     "this client": os.getpid()}  # fmt: skip
        for followers in counts:
            p50, p99, delivered = await bare_grpc_latency(followers, options.seconds)
            print(f"bare grpc.aio fan-out, {followers:5} followers on 2 servers, 200 events/s:"
                  f" p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  ({delivered:,} deliveries)")  # fmt: skip
            used = {name: cpu_seconds(pid) for name, pid in processes.items()}
            p50, p99, delivered, written = await latency(
                first.address, [stub_a, stub_b], followers, options.seconds
            )
            print(f"latency, {followers:5} followers on 2 replicas, {written:.0f} events/s:"
                  f" p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  ({delivered:,} deliveries)")  # fmt: skip
            busy = ", ".join(
                f"{name} {(cpu_seconds(pid) - used[name]) / options.seconds:.0%}"
                for name, pid in processes.items()
            )
            print(f"    CPU while measuring: {busy}")
        before, after = await idle_memory(stub_b, second.process.pid, 1000)
        print(f"server memory: {before:.0f} MiB, with 1,000 idle followers {after:.0f} MiB"
              f" (+{after - before:.0f} MiB)")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
