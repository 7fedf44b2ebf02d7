"""Appends of two checkouts, alternating: did a change cost batched throughput, and what did
it do to an awaited single-event append?

    python -m bench.append_ab --base DIR [--database-url URL] [--rounds 6] [--awaited 1000]

DIR is another checkout of agentstore (`git worktree add /tmp/base REV`). Each round runs
both, in alternating order, each on a fresh scratch database with its own server: 4 streams
of 250-event messages next to raw `COPY` into the same table (bench/append.py's figures),
then 16 streams of single-event messages, then `--awaited` single-event appends on one open
AppendStream, each awaited before the next (what an adapter does): their p50, and the CPU
each cost the server, PostgreSQL (all its processes) and this client. CPU time moves less
than wall time when the machine is shared. This machine's speed drifts from minute to
minute, so one run of each says little; the medians of many alternating rounds say more.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from agentstore.v1 import session_service_pb2 as pb
from agentstore.v1.session_service_pb2_grpc import SessionServiceStub
from bench.append import copy_rate, messages, new_sessions, stream_rate
from bench.common import ROOT, CpuMeter, parser, rate, running_server, scratch_database
from bench.latency import WARM_UP, Pipe, one_event

COPY_EVENTS = 40_000


@dataclass(frozen=True)
class Round:
    four_streams: float  # events/s
    raw_copy: float  # events/s
    sixteen_streams: float  # single-event messages/s
    awaited_p50: float  # ms
    awaited_cpu: dict[str, float]  # ms per append, by process


async def awaited_appends(
    stub: SessionServiceStub, server_pid: int, count: int
) -> tuple[float, dict[str, float]]:
    """p50 (ms) and CPU per append (ms, by process) of `count` awaited appends."""
    (session_id,) = await new_sessions(stub, 1)
    pipe = Pipe(stub.AppendStream)
    try:
        for n in range(WARM_UP):
            await pipe.round_trip(
                pb.AppendStreamRequest(session_id=session_id, events=[one_event(n)])
            )
        meter = CpuMeter(server_pid)
        meter.start()
        durations = []
        for n in range(count):
            request = pb.AppendStreamRequest(session_id=session_id, events=[one_event(n)])
            started = time.perf_counter()
            await pipe.round_trip(request)
            durations.append(time.perf_counter() - started)
        used = meter.stop()
    finally:
        pipe.close()
    cpu = {part: seconds * 1000 / count for part, seconds in used.items()}
    return statistics.median(durations) * 1000, cpu


async def one_round(checkout: Path, admin_url: str | None, awaited: int) -> Round:
    """The figures of the server of `checkout`."""
    os.environ["PYTHONPATH"] = f"{checkout / 'src'}{os.pathsep}{checkout}"
    async with (
        scratch_database(admin_url) as database_url,
        running_server(database_url) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        stub = SessionServiceStub(channel)
        (warm,) = await new_sessions(stub, 1)
        await stream_rate(stub, [messages(warm, 2000, 250)])
        four = await new_sessions(stub, 4)
        seconds, appended, _ = await stream_rate(
            stub, [messages(s, COPY_EVENTS // 4, 250) for s in four]
        )
        four_streams = rate(appended, seconds)
        (copy_session,) = await new_sessions(stub, 1)
        raw_copy = rate(COPY_EVENTS, await copy_rate(database_url, copy_session, COPY_EVENTS))
        sixteen = await new_sessions(stub, 16)
        seconds, _, sent = await stream_rate(stub, [messages(s, 1000, 1) for s in sixteen])
        awaited_p50, awaited_cpu = await awaited_appends(stub, server.process.pid, awaited)
        return Round(four_streams, raw_copy, rate(sent, seconds), awaited_p50, awaited_cpu)


async def main() -> None:
    options = parser(__doc__ or "")
    options.add_argument("--base", type=Path, required=True, help="the other checkout")
    options.add_argument("--rounds", type=int, default=6)
    options.add_argument("--awaited", type=int, default=1000, help="awaited appends a round")
    arguments = options.parse_args()
    checkouts = {"base": arguments.base.resolve(), "this": ROOT}
    results: dict[str, list[Round]] = {name: [] for name in checkouts}
    for number in range(arguments.rounds):
        order = ["base", "this"] if number % 2 == 0 else ["this", "base"]
        for name in order:
            row = await one_round(checkouts[name], arguments.database_url, arguments.awaited)
            results[name].append(row)
            print(
                f"round {number + 1} {name:4}: 4 streams {row.four_streams:8,.0f} events/s,"
                f" COPY {row.raw_copy:8,.0f} events/s,"
                f" ratio {row.four_streams / row.raw_copy:.2f}; 16 streams of 1-event messages"
                f" {row.sixteen_streams:7,.0f} messages/s; awaited p50"
                f" {row.awaited_p50:.2f} ms, CPU ms an append: {_cpu(row.awaited_cpu)}",
                flush=True,
            )
    for name, rows in results.items():
        ratios = [row.four_streams / row.raw_copy for row in rows]
        cpu = {
            part: statistics.median(row.awaited_cpu.get(part, 0.0) for row in rows)
            for part in rows[0].awaited_cpu
        }
        print(
            f"{name:4}: ratio to COPY {' '.join(f'{r:.2f}' for r in ratios)},"
            f" median {statistics.median(ratios):.2f};"
            f" 4 streams median {statistics.median(r.four_streams for r in rows):,.0f} events/s;"
            f" 16 x 1-event median {statistics.median(r.sixteen_streams for r in rows):,.0f}"
            f" messages/s; awaited p50 median"
            f" {statistics.median(r.awaited_p50 for r in rows):.2f} ms, CPU ms an append"
            f" (medians): {_cpu(cpu)}"
        )


def _cpu(used: dict[str, float]) -> str:
    return ", ".join(f"{part} {milliseconds:.2f}" for part, milliseconds in used.items())


if __name__ == "__main__":
    asyncio.run(main())
