"""What full-text search indexing costs appends, measured with and without it in one run.

    python -m bench.indexing [--database-url URL] [--rounds 3]

Two scratch databases on one PostgreSQL: one as migrated, one with the events table's search
column (and with it the GIN index) dropped, each with its own agentstore server. Rounds
alternate between the two, so that the machine's drift from minute to minute falls on both
alike. Each round measures, on each database: 4 concurrent streams of 250-event messages,
one stream of single-event messages, and raw psycopg COPY of the same events (what indexing
costs PostgreSQL alone). Prints the median of the rounds and the ratio with / without, then
the CPU time per event of the server, PostgreSQL and this client during the 4-stream appends
(from /proc, on Linux).
"""

from __future__ import annotations

import asyncio
import statistics
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import grpc
import psycopg

from agentstore.v1.session_service_pb2_grpc import SessionServiceStub
from bench.append import copy_rate, messages, new_sessions, stream_rate
from bench.common import CpuMeter, Server, parser, rate, running_server, scratch_databases

BATCHED_EVENTS = 40_000
SINGLE_EVENTS = 5_000
# What each round measures: key, label, unit.
RATES = [
    ("4 streams", "AppendEvents, 4 streams x 250-event msgs", "events/s"),
    ("single-event", "AppendEvents, 1 stream, 1-event msgs", "events/s"),
    ("COPY", "raw COPY (psycopg, one transaction)", "rows/s"),
]


@dataclass
class Figures:
    """One database's figures, a list per measure with one entry per round."""

    rates: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    # CPU microseconds per event of the 4-stream appends, by part (server, PostgreSQL, ...).
    cpu: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


@dataclass
class Target:
    """One of the two databases, its server and a client of it."""

    name: str
    database_url: str
    server: Server
    stub: SessionServiceStub


async def drop_search_index(database_url: str) -> None:
    """For measuring what indexing costs: the same table without its search column."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        await connection.execute("ALTER TABLE events DROP COLUMN search_vector")


@asynccontextmanager
async def targets(admin_url: str | None) -> AsyncIterator[list[Target]]:
    async with AsyncExitStack() as stack:
        urls = await stack.enter_async_context(scratch_databases(admin_url, 2))
        result = []
        for name, url in zip(("with", "without"), urls, strict=True):
            server = await stack.enter_async_context(running_server(url))
            channel = await stack.enter_async_context(grpc.aio.insecure_channel(server.address))
            result.append(Target(name, url, server, SessionServiceStub(channel)))
        await drop_search_index(urls[1])  # the server has migrated it by now
        yield result


async def one_round(target: Target, figures: Figures) -> None:
    sessions = await new_sessions(target.stub, 4)
    streams = [messages(s, BATCHED_EVENTS // 4, 250) for s in sessions]
    meter = CpuMeter(target.server.process.pid)
    meter.start()
    seconds, appended, _ = await stream_rate(target.stub, streams)
    for part, cpu in meter.stop().items():
        figures.cpu[part].append(cpu / appended * 1e6)
    figures.rates["4 streams"].append(rate(appended, seconds))

    (chatty,) = await new_sessions(target.stub, 1)
    seconds, appended, _ = await stream_rate(target.stub, [messages(chatty, SINGLE_EVENTS, 1)])
    figures.rates["single-event"].append(rate(appended, seconds))

    (copied,) = await new_sessions(target.stub, 1)
    figures.rates["COPY"].append(
        rate(BATCHED_EVENTS, await copy_rate(target.database_url, copied, BATCHED_EVENTS))
    )


async def main() -> None:
    options = parser(__doc__ or "")
    options.add_argument("--rounds", type=int, default=3, help="rounds on each database")
    arguments = options.parse_args()
    figures = {"with": Figures(), "without": Figures()}
    async with targets(arguments.database_url) as both:
        for target in both:  # warm up: pools, prepared statements, caches
            (warm,) = await new_sessions(target.stub, 1)
            await stream_rate(target.stub, [messages(warm, 2000, 250)])
        for number in range(arguments.rounds):
            # Alternate which goes first, so neither always follows the other's checkpoint.
            for target in both if number % 2 == 0 else both[::-1]:
                await one_round(target, figures[target.name])

    with_index, without_index = figures["with"], figures["without"]
    print(f"{arguments.rounds} rounds each; medians; ratio = with the search index / without")
    for key, label, unit in RATES:
        with_rates, without_rates = with_index.rates[key], without_index.rates[key]
        with_rate, without_rate = statistics.median(with_rates), statistics.median(without_rates)
        print(f"{label:42s} with {with_rate:8,.0f}  without {without_rate:8,.0f} {unit}"
              f"  ratio {with_rate / without_rate:.2f}")  # fmt: skip
        rounds = " ".join(f"{a / b:.2f}" for a, b in zip(with_rates, without_rates, strict=True))
        print(f"{'':42s} ratio in each round: {rounds}")
    if with_index.cpu:
        print("CPU per event during the 4-stream appends (us, medians):")
        for part, with_cpus in with_index.cpu.items():
            with_cpu = statistics.median(with_cpus)
            without_cpu = statistics.median(without_index.cpu[part])
            print(f"  {part:12s} with {with_cpu:6.1f}  without {without_cpu:6.1f}"
                  f"  difference {with_cpu - without_cpu:+6.1f}")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
