"""A long run under steady load: nothing lost, nothing repeated, memory bounded.

    python -m bench.soak [--database-url URL] [--minutes 30] [--sessions 8]
                         [--restart-every SECONDS]

Two replicas on a scratch database. Writers append one event at a time to each session
through the SDK (resending the same event id until acknowledged, as an agent would), with a
follower per session and an app feed follower, all given both replicas. With
`--restart-every`, one replica at a time is stopped with SIGTERM and started again on the
same port, over and over. Every minute a line: appends/s, the replicas' resident memory. At
the end the ledger is checked against the store (every acknowledged event stored once at its
seq; every follower got exactly the stored events, in order) and memory's growth from the
first minute to the last is printed. Exit code 1 if an invariant broke.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from dataclasses import dataclass, field

from agentstore.client import AgentstoreError, AsyncClient
from agentstore.client.errors import is_transient
from bench.common import Server, parser, running_server, scratch_database

APP = "soak"


@dataclass
class Ledger:
    acknowledged: dict[str, dict[str, int]] = field(default_factory=dict)
    received: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    feed: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    retried: int = 0
    # Set whenever a follower receives an event.
    received_more: asyncio.Event = field(default_factory=asyncio.Event)


def resident_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def write(client: AsyncClient, session_id: str, ledger: Ledger, stop: asyncio.Event) -> None:
    number = 0
    while not stop.is_set():
        event_id = f"{session_id[-12:]}-{number}"
        try:
            result = await client.append(
                session_id, {"type": "step", "event_id": event_id, "data": {"n": number}}
            )
        except AgentstoreError as exc:
            # Resent by the SDK already, with its backoff: the same id goes again at once.
            if not is_transient(exc) and exc.code.name != "DEADLINE_EXCEEDED":
                raise
            ledger.retried += 1
            continue
        ledger.acknowledged[session_id][event_id] = result.seqs[0]
        number += 1


async def follow(client: AsyncClient, session_id: str, ledger: Ledger) -> None:
    async for event in client.follow(session_id=session_id, give_up_after=None):
        ledger.received[session_id].append((event.seq, event.event_id))
        ledger.received_more.set()


async def follow_feed(client: AsyncClient, ledger: Ledger) -> None:
    async for event in client.follow(app_name=APP, give_up_after=None):
        ledger.feed[event.session_id].append((event.seq, event.event_id))
        ledger.received_more.set()


def check(ledger: Ledger, stored: dict[str, list[tuple[int, str]]]) -> list[str]:
    problems = []
    for session_id, events in stored.items():
        ids = [event_id for _, event_id in events]
        by_id = {event_id: seq for seq, event_id in events}
        lost = [e for e in ledger.acknowledged[session_id] if e not in by_id]
        moved = [e for e, s in ledger.acknowledged[session_id].items() if by_id.get(e, s) != s]
        if lost or moved or len(ids) != len(set(ids)):
            problems.append(f"{session_id}: lost {len(lost)}, moved {len(moved)}")
        if [seq for seq, _ in events] != list(range(1, len(events) + 1)):
            problems.append(f"{session_id}: seqs with a gap")
        if ledger.received[session_id] != events:
            problems.append(f"{session_id}: its follower differs from the store")
        if ledger.feed[session_id] != events:
            problems.append(f"{session_id}: the feed differs from the store")
    return problems


async def main() -> int:
    options = parser(__doc__ or "")
    options.add_argument("--minutes", type=float, default=30.0)
    options.add_argument("--sessions", type=int, default=8)
    options.add_argument("--restart-every", type=float, default=0.0, metavar="SECONDS")
    arguments = options.parse_args()
    ports = [free_port(), free_port()]
    ledger = Ledger()
    async with scratch_database(arguments.database_url) as url:
        # One exit stack per replica, so that one can be stopped and started again.
        stacks = [contextlib.AsyncExitStack() for _ in ports]

        async def start(which: int) -> Server:
            return await stacks[which].enter_async_context(
                running_server(url, "--listen", f"127.0.0.1:{ports[which]}",
                               "--database-call-timeout", "5s")
            )  # fmt: skip

        servers = [await start(which) for which in range(len(ports))]
        targets = [server.address for server in servers]
        setup, writers, followers = (AsyncClient(targets, timeout=10.0) for _ in range(3))
        sessions = [(await setup.create_session(APP)).id for _ in range(arguments.sessions)]
        for session_id in sessions:
            ledger.acknowledged[session_id], ledger.received[session_id] = {}, []
            ledger.feed[session_id] = []
        stop = asyncio.Event()
        tasks = [asyncio.create_task(follow(followers, s, ledger)) for s in sessions]
        tasks.append(asyncio.create_task(follow_feed(followers, ledger)))
        writing = [asyncio.create_task(write(writers, s, ledger, stop)) for s in sessions]
        started = time.monotonic()
        samples: list[list[float]] = []
        last_count, last_time, next_restart = 0, started, started + arguments.restart_every
        restarts = 0
        while time.monotonic() - started < arguments.minutes * 60:
            await asyncio.sleep(5)
            if failed := [t for t in writing if t.done()]:
                failed[0].result()  # a writer's unexpected error ends the soak
            now = time.monotonic()
            if arguments.restart_every and now >= next_restart:
                which = restarts % 2
                await stacks[which].aclose()  # SIGTERM, and wait for it to exit
                servers[which] = await start(which)
                restarts += 1
                next_restart = now + arguments.restart_every
            if now - last_time >= 60 or now - started >= arguments.minutes * 60:
                count = sum(map(len, ledger.acknowledged.values()))
                memory = [resident_mib(server.process.pid) for server in servers]
                samples.append(memory)
                print(
                    f"{(now - started) / 60:5.1f} min  {count:>9,} appended"
                    f"  {(count - last_count) / (now - last_time):7.1f} /s"
                    f"  replicas {memory[0]:6.1f} MiB {memory[1]:6.1f} MiB"
                    f"  retried {ledger.retried}  restarts {restarts}",
                    flush=True,
                )
                last_count, last_time = count, now
        stop.set()
        await asyncio.gather(*writing)
        stored = {s: [(e.seq, e.event_id) async for e in setup.list_events(s)] for s in sessions}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ledger.received_more.clear()  # before looking: nothing arriving now is missed
            if all(
                len(ledger.received[s]) >= len(stored[s]) and len(ledger.feed[s]) >= len(stored[s])
                for s in sessions
            ):
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ledger.received_more.wait(), deadline - time.monotonic())
        for task in tasks:
            task.cancel()
        for client in (setup, writers, followers):
            await client.close()
        for stack in stacks:
            await stack.aclose()
    acknowledged = sum(map(len, ledger.acknowledged.values()))
    problems = check(ledger, stored)
    print(f"acknowledged {acknowledged:,}, stored {sum(map(len, stored.values())):,},"
          f" retried {ledger.retried}, restarts {restarts}")  # fmt: skip
    if len(samples) >= 2:
        first, last = samples[0], samples[-1]
        print("memory, first sample -> last: " + ", ".join(
            f"{a:.1f} -> {b:.1f} MiB" for a, b in zip(first, last, strict=True)
        ))  # fmt: skip
    for problem in problems:
        print("PROBLEM", problem)
    print("invariants held" if not problems else f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
