"""Fuzzing every RPC through a real server: generated requests and undecodable bytes.

    python -m bench.fuzz [--database-url URL] [--messages 100000]

Starts `agentstore serve` on a scratch database and sends `--messages` requests generated from
the protos' descriptors to each RPC, plus a fifth as many byte strings no encoder would make
(tests/fuzzing.py, which the test suite runs for 250 a RPC). Prints the count of each status
code by RPC; stops at the first INTERNAL, UNKNOWN or status message carrying implementation
text, printing the request; and checks the server is still healthy at the end.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentstore.v1 import session_service_pb2 as pb
from agentstore.v1.session_service_pb2_grpc import SessionServiceStub
from bench.common import parser, running_server, scratch_database
from tests.fuzzing import fuzz_every_rpc


async def main() -> int:
    options = parser(__doc__ or "")
    options.add_argument("--messages", type=int, default=100_000, help="requests per RPC")
    arguments = options.parse_args()
    app_name = "fuzz"
    async with (
        scratch_database(arguments.database_url) as database_url,
        running_server(database_url) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        stub = SessionServiceStub(channel)
        known_ids = []
        for index in range(3):
            session = await stub.CreateSession(
                pb.CreateSessionRequest(app_name=app_name, session_id=f"fuzz-{index}")
            )
            known_ids.append(session.id)
        started = time.monotonic()
        try:
            by_rpc = await fuzz_every_rpc(stub, channel, known_ids, app_name, arguments.messages)
        except AssertionError as failure:
            print(f"FAILED: {failure}", file=sys.stderr)
            return 1
        seconds = time.monotonic() - started
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        alive = server.process.returncode is None
    totals: Counter[str] = Counter()
    for codes in by_rpc.values():
        totals.update(codes)
    print(f"{sum(totals.values()):,} requests in {seconds:,.0f} s; counts by status code:\n")
    names = sorted(totals)
    print(f"{'RPC':18}" + "".join(f"{name:>20}" for name in names))
    for rpc, codes in by_rpc.items():
        print(f"{rpc:18}" + "".join(f"{codes.get(name, 0):20,}" for name in names))
    serving = health.status == health_pb2.HealthCheckResponse.SERVING
    print(f"\nno INTERNAL, no UNKNOWN; server afterwards: {'SERVING' if serving else 'NOT'}")
    return 0 if serving and alive else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
