"""Latency of one awaited call: agentstore next to the floor it stands on, in one run.

    python -m bench.latency [--database-url URL] [--calls 1000]

What an agent framework's adapter does is one call at a time, awaited: append one event, go
on. For each kind of call this prints p50 and p99 over `--calls` calls (after a warm-up), and
the floor measured in the same run: the PostgreSQL part (psycopg on one connection: an INSERT
in autocommit, an UPDATE, a SELECT by key) plus the gRPC part (a bare grpc.aio server in its
own process: a unary round trip, or one message and its answer on an open bidirectional
stream). Target: each p50 within 1.5x of its floor.

Also printed, as a second floor: the same bare server doing the same database round trip in
its handler (`one process`), which on this machine costs more than the two parts measured
apart; the distance from it is what agentstore itself adds.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import psycopg
from google.protobuf import struct_pb2

from agentstore.app import with_keys
from agentstore.config import Settings
from agentstore.domain.callers import Role
from agentstore.v1 import event_pb2
from agentstore.v1 import session_service_pb2 as pb
from agentstore.v1.session_service_pb2_grpc import SessionServiceStub
from bench.common import parser, running_grpc_baseline, running_server, scratch_database

WARM_UP = 50


def percentiles(seconds: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000


async def timed(calls: int, call: Callable[[int], Awaitable[object]]) -> list[float]:
    for n in range(WARM_UP):
        await call(-1 - n)
    durations = []
    for n in range(calls):
        started = time.perf_counter()
        await call(n)
        durations.append(time.perf_counter() - started)
    return durations


class Pipe:
    """One open bidirectional stream: send a request, await its answer."""

    def __init__(self, open_call: Callable[[AsyncIterator[object]], object]) -> None:
        self._outgoing: asyncio.Queue[object] = asyncio.Queue()
        self._call: object = open_call(self._requests())
        self._answers = aiter(self._call)  # type: ignore[call-overload]

    async def _requests(self) -> AsyncIterator[object]:
        while True:
            yield await self._outgoing.get()

    async def round_trip(self, request: object) -> object:
        self._outgoing.put_nowait(request)
        return await anext(self._answers)

    def close(self) -> None:
        self._call.cancel()  # type: ignore[attr-defined]


async def postgres_floors(database_url: str, calls: int) -> dict[str, list[float]]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as db:
        await db.execute("CREATE TABLE latency_floor (id text PRIMARY KEY, n bigint, body jsonb)")
        await db.execute("INSERT INTO latency_floor VALUES ('key', 0, '{}')")
        body = '{"text": "the agent looked up the invoice and drafted a refund"}'

        async def insert(n: int) -> None:
            await db.execute(
                "INSERT INTO latency_floor VALUES (%s, %s, %s)", (uuid.uuid4().hex, n, body)
            )

        async def update(n: int) -> None:
            await db.execute("UPDATE latency_floor SET n = %s WHERE id = 'key'", (n,))

        async def select(n: int) -> None:
            cursor = await db.execute("SELECT * FROM latency_floor WHERE id = 'key'")
            await cursor.fetchone()

        return {
            "insert": await timed(calls, insert),
            "update": await timed(calls, update),
            "select": await timed(calls, select),
        }


async def grpc_floors(calls: int) -> dict[str, list[float]]:
    async with running_grpc_baseline() as address, grpc.aio.insecure_channel(address) as ch:
        stub = SessionServiceStub(ch)
        unary = await timed(calls, lambda n: stub.GetSession(pb.GetSessionRequest(session_id="s")))
        pipe = Pipe(stub.AppendStream)
        message = pb.AppendStreamRequest(session_id="s", events=[event_pb2.Event(type="t")])
        bidi = await timed(calls, lambda n: pipe.round_trip(message))
        pipe.close()
        return {"unary": unary, "bidi": bidi}


async def one_process_floors(database_url: str, calls: int) -> dict[str, list[float]]:
    """The bare grpc.aio server doing each call's database round trip itself (after
    postgres_floors made its table): what one process serving both costs."""
    async with (
        running_grpc_baseline("--database-url", database_url) as address,
        grpc.aio.insecure_channel(address) as channel,
    ):
        stub = SessionServiceStub(channel)
        pipe = Pipe(stub.AppendStream)
        message = pb.AppendStreamRequest(session_id="s", events=[event_pb2.Event(type="t")])
        results = {
            "bidi + INSERT": await timed(calls, lambda n: pipe.round_trip(message)),
            "unary + INSERT": await timed(
                calls, lambda n: stub.CreateSession(pb.CreateSessionRequest(app_name="a"))
            ),
            "unary + UPDATE": await timed(
                calls, lambda n: stub.UpdateSession(pb.UpdateSessionRequest(session_id="s"))
            ),
            "unary + SELECT": await timed(
                calls, lambda n: stub.GetSession(pb.GetSessionRequest(session_id="s"))
            ),
        }
        pipe.close()
        return results


def one_event(n: int) -> event_pb2.Event:
    return event_pb2.Event(
        type="message",
        author="assistant",
        content=event_pb2.Content(
            role="assistant", text=f"step {n}: the agent looked up the invoice"
        ),
    )


async def agentstore_calls(database_url: str, calls: int) -> dict[str, list[float]]:
    async with (
        running_server(database_url) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        stub = SessionServiceStub(channel)
        session = await stub.CreateSession(pb.CreateSessionRequest(app_name="latency"))
        pipe = Pipe(stub.AppendStream)

        async def stream_append(n: int) -> None:
            ack = await pipe.round_trip(
                pb.AppendStreamRequest(session_id=session.id, events=[one_event(n)])
            )
            assert not ack.HasField("error"), ack  # type: ignore[attr-defined]

        async def call_append(n: int) -> None:
            request = pb.AppendEventsRequest(session_id=session.id, events=[one_event(n)])
            await stub.AppendEvents(iter([request]))

        async def create(n: int) -> None:
            await stub.CreateSession(pb.CreateSessionRequest(app_name="latency", user_id="u"))

        delta = struct_pb2.Struct()

        async def update(n: int) -> None:
            delta.update({"step": n})
            await stub.UpdateSession(
                pb.UpdateSessionRequest(session_id=session.id, state_delta=delta)
            )

        async def get(n: int) -> None:
            await stub.GetSession(pb.GetSessionRequest(session_id=session.id))

        results = {
            "AppendStream, one event, awaited": await timed(calls, stream_append),
            "AppendEvents call, one message of one event": await timed(calls, call_append),
            "CreateSession": await timed(calls, create),
            "UpdateSession (state delta)": await timed(calls, update),
            "GetSession": await timed(calls, get),
        }
        pipe.close()
        return results


async def key_check_cost(database_url: str, calls: int) -> dict[str, list[float]]:
    """GetSession on a server without keys and on one with --auth api-key, alternating in
    rounds of 100 calls, so that both see the same machine."""
    settings = Settings(database_url=database_url)
    _, key = await with_keys(settings, lambda keys: keys.create(apps=["latency"], role=Role.READER))
    metadata = (("authorization", f"Bearer {key}"),)
    async with (
        running_server(database_url) as open_server,
        running_server(database_url, "--auth", "api-key") as keyed_server,
        grpc.aio.insecure_channel(open_server.address) as open_channel,
        grpc.aio.insecure_channel(keyed_server.address) as keyed_channel,
    ):
        open_stub, keyed_stub = SessionServiceStub(open_channel), SessionServiceStub(keyed_channel)
        session = await open_stub.CreateSession(pb.CreateSessionRequest(app_name="latency"))
        request = pb.GetSessionRequest(session_id=session.id)
        results: dict[str, list[float]] = {"without keys": [], "with --auth api-key": []}
        for _ in range(max(1, calls // 100)):
            results["without keys"] += await timed(100, lambda n: open_stub.GetSession(request))
            results["with --auth api-key"] += await timed(
                100, lambda n: keyed_stub.GetSession(request, metadata=metadata)
            )
        return results


async def main() -> None:
    options = parser(__doc__ or "")
    options.add_argument("--calls", type=int, default=1000, help="calls of each kind")
    options.add_argument(
        "--key-check", action="store_true", help="only: what checking an API key costs a call"
    )
    arguments = options.parse_args()
    calls = arguments.calls
    if arguments.key_check:
        async with scratch_database(arguments.database_url) as database_url:
            costs = await key_check_cost(database_url, calls)
        for name, durations in costs.items():
            p50, p99 = percentiles(durations)
            print(f"GetSession {name:24} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")
        return
    async with scratch_database(arguments.database_url) as database_url:
        postgres = await postgres_floors(database_url, calls)
        grpc_part = await grpc_floors(calls)
        together = await one_process_floors(database_url, calls)
        ours = await agentstore_calls(database_url, calls)
    floors = {
        "psycopg INSERT (autocommit)": postgres["insert"],
        "psycopg UPDATE by key": postgres["update"],
        "psycopg SELECT by key": postgres["select"],
        "bare grpc.aio unary round trip": grpc_part["unary"],
        "bare grpc.aio bidi message round trip": grpc_part["bidi"],
        "one process: bidi message + INSERT": together["bidi + INSERT"],
        "one process: unary + INSERT": together["unary + INSERT"],
        "one process: unary + UPDATE": together["unary + UPDATE"],
        "one process: unary + SELECT": together["unary + SELECT"],
    }
    print(f"{calls:,} calls each after {WARM_UP} to warm up; milliseconds\n")
    print(f"{'floor':58} {'p50':>7} {'p99':>7}")
    for name, durations in floors.items():
        p50, p99 = percentiles(durations)
        print(f"{name:58} {p50:7.2f} {p99:7.2f}")
    p50_of = {name: percentiles(durations)[0] for name, durations in floors.items()}
    floor_of = {
        "AppendStream, one event, awaited": p50_of["psycopg INSERT (autocommit)"]
        + p50_of["bare grpc.aio bidi message round trip"],
        "AppendEvents call, one message of one event": p50_of["psycopg INSERT (autocommit)"]
        + p50_of["bare grpc.aio unary round trip"],
        "CreateSession": p50_of["psycopg INSERT (autocommit)"]
        + p50_of["bare grpc.aio unary round trip"],
        "UpdateSession (state delta)": p50_of["psycopg UPDATE by key"]
        + p50_of["bare grpc.aio unary round trip"],
        "GetSession": p50_of["psycopg SELECT by key"] + p50_of["bare grpc.aio unary round trip"],
    }
    one_process_of = {
        "AppendStream, one event, awaited": p50_of["one process: bidi message + INSERT"],
        "AppendEvents call, one message of one event": p50_of["one process: unary + INSERT"],
        "CreateSession": p50_of["one process: unary + INSERT"],
        "UpdateSession (state delta)": p50_of["one process: unary + UPDATE"],
        "GetSession": p50_of["one process: unary + SELECT"],
    }
    print(
        f"\n{'agentstore':44} {'p50':>7} {'p99':>7} {'floor':>7} {'ratio':>6}"
        f" {'one process':>12} {'ratio':>6}"
    )
    for name, durations in ours.items():
        p50, p99 = percentiles(durations)
        print(
            f"{name:44} {p50:7.2f} {p99:7.2f} {floor_of[name]:7.2f} {p50 / floor_of[name]:6.2f}"
            f" {one_process_of[name]:12.2f} {p50 / one_process_of[name]:6.2f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
