"""Appends of two checkouts, alternating: did a change cost batched throughput?

    python -m bench.append_ab --base DIR [--database-url URL] [--rounds 6]

DIR is another checkout of agentstore (`git worktree add /tmp/base REV`). Each round runs
both, in alternating order, each on a fresh scratch database with its own server: 4 streams
of 250-event messages next to raw `COPY` into the same table (bench/append.py's figures),
then 16 streams of single-event messages. This machine's speed drifts from minute to minute,
so one run of each says little; the medians of many alternating rounds say more.
"""

from __future__ import annotations

import asyncio
import os
import statistics
from pathlib import Path

import grpc

from agentstore.v1.session_service_pb2_grpc import SessionServiceStub
from bench.append import copy_rate, messages, new_sessions, stream_rate
from bench.common import ROOT, parser, rate, running_server, scratch_database

COPY_EVENTS = 40_000


async def one_round(checkout: Path, admin_url: str | None) -> tuple[float, float, float]:
    """(4-stream events/s, COPY events/s, 16-stream single-event messages/s) of the server
    of `checkout`."""
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
        return four_streams, raw_copy, rate(sent, seconds)


async def main() -> None:
    options = parser(__doc__ or "")
    options.add_argument("--base", type=Path, required=True, help="the other checkout")
    options.add_argument("--rounds", type=int, default=6)
    arguments = options.parse_args()
    checkouts = {"base": arguments.base.resolve(), "this": ROOT}
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in checkouts}
    for number in range(arguments.rounds):
        order = ["base", "this"] if number % 2 == 0 else ["this", "base"]
        for name in order:
            four, copy, sixteen = await one_round(checkouts[name], arguments.database_url)
            results[name].append((four, copy, sixteen))
            print(
                f"round {number + 1} {name:4}: 4 streams {four:8,.0f} events/s, COPY"
                f" {copy:8,.0f} events/s, ratio {four / copy:.2f}; 16 streams of 1-event"
                f" messages {sixteen:7,.0f} messages/s",
                flush=True,
            )
    for name, rows in results.items():
        ratios = [four / copy for four, copy, _ in rows]
        print(
            f"{name:4}: ratio to COPY {' '.join(f'{r:.2f}' for r in ratios)},"
            f" median {statistics.median(ratios):.2f};"
            f" 4 streams median {statistics.median(r[0] for r in rows):,.0f} events/s;"
            f" 16 x 1-event median {statistics.median(r[2] for r in rows):,.0f} messages/s"
        )


if __name__ == "__main__":
    asyncio.run(main())
