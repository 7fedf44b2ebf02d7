"""A bare grpc.aio server with agentstore's service definition and, unless asked, no
database: the baseline for what gRPC in Python alone allows on this machine.

- AppendEvents only counts the messages it receives (for the single-event append figures).
- GetSession answers every request with the same small session at once, and AppendStream
  acknowledges each request at once (for the round-trip floors of bench/latency.py).
- With `--database-url URL` (a database holding bench/latency.py's `latency_floor` table),
  GetSession first reads a row by key, CreateSession inserts one, UpdateSession updates one
  and AppendStream inserts one per request, each in autocommit on one of a small pool's
  connections, as agentstore does: the floor of one process doing both a gRPC call and its
  database round trip, which costs more than the two measured apart (bench/latency.py).
- StreamEvents follows one of 10 sessions ("s0".."s9") whose events the server makes itself,
  200 a second in total, each sent to every follower of its session as it is made; an
  event's text is its creation time (time.perf_counter), as in bench/stream.py (for the
  fan-out latency figures).

    python -m bench.grpc_baseline [--database-url URL]
    # prints "listening on 127.0.0.1:PORT", serves until killed
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, LiteralString

import grpc
from psycopg_pool import AsyncConnectionPool

from agentstore.v1 import event_pb2, session_pb2, session_service_pb2_grpc
from agentstore.v1 import session_service_pb2 as pb

SESSIONS = 10
# bench/latency.py's floor table and row, written the same way by its psycopg floor.
INSERT_FLOOR_ROW: LiteralString = "INSERT INTO latency_floor VALUES (%s, %s, %s)"
FLOOR_BODY = '{"text": "the agent looked up the invoice and drafted a refund"}'
EVENTS_PER_SECOND = 200


class BaselineServicer(session_service_pb2_grpc.SessionServiceServicer):
    def __init__(self, pool: AsyncConnectionPool[Any] | None = None) -> None:
        self._pool = pool
        self._session = session_pb2.Session(id="s", app_name="bench", version=1)
        self._followers: dict[str, set[asyncio.Queue[pb.StreamEventsResponse]]] = {
            f"s{n}": set() for n in range(SESSIONS)
        }

    async def AppendEvents(  # noqa: N802 - the generated method name
        self, request_iterator: AsyncIterator[pb.AppendEventsRequest], context: Any
    ) -> pb.AppendEventsResponse:
        events = 0
        async for request in request_iterator:
            events += len(request.events)
        return pb.AppendEventsResponse(appended=events)

    async def GetSession(  # noqa: N802 - the generated method name
        self, request: pb.GetSessionRequest, context: Any
    ) -> Any:
        await self._database("SELECT * FROM latency_floor WHERE id = 'key'", fetch=True)
        return self._session

    async def CreateSession(  # noqa: N802 - the generated method name
        self, request: pb.CreateSessionRequest, context: Any
    ) -> Any:
        await self._database(INSERT_FLOOR_ROW, (uuid.uuid4().hex, 0, FLOOR_BODY))
        return self._session

    async def UpdateSession(  # noqa: N802 - the generated method name
        self, request: pb.UpdateSessionRequest, context: Any
    ) -> Any:
        await self._database("UPDATE latency_floor SET n = n + 1 WHERE id = 'key'")
        return self._session

    async def _database(
        self, statement: LiteralString, params: tuple[Any, ...] = (), *, fetch: bool = False
    ) -> None:
        if self._pool is None:
            return
        async with self._pool.connection() as connection:
            cursor = await connection.execute(statement, params)
            if fetch:
                await cursor.fetchone()

    async def AppendStream(  # noqa: N802 - the generated method name
        self, request_iterator: AsyncIterator[pb.AppendStreamRequest], context: Any
    ) -> AsyncIterator[pb.AppendStreamResponse]:
        async for request in request_iterator:
            await self._database(INSERT_FLOOR_ROW, (uuid.uuid4().hex, 0, FLOOR_BODY))
            yield pb.AppendStreamResponse(
                request_id=request.request_id, appended=len(request.events), seqs=[1]
            )

    async def StreamEvents(  # noqa: N802 - the generated method name
        self, request: pb.StreamEventsRequest, context: Any
    ) -> AsyncIterator[pb.StreamEventsResponse]:
        queue: asyncio.Queue[pb.StreamEventsResponse] = asyncio.Queue()
        followers = self._followers[request.session_id]
        followers.add(queue)
        try:
            yield pb.StreamEventsResponse(caught_up=True)
            while True:
                yield await queue.get()
        finally:
            followers.discard(queue)

    async def make_events(self) -> None:
        started = time.perf_counter()
        number = 0
        while True:
            session = f"s{number % SESSIONS}"
            response = pb.StreamEventsResponse(
                events=[
                    event_pb2.Event(
                        session_id=session, seq=number // SESSIONS + 1, type="token",
                        content=event_pb2.Content(text=repr(time.perf_counter())),
                    )
                ]
            )  # fmt: skip
            for queue in self._followers[session]:
                queue.put_nowait(response)
            number += 1
            await asyncio.sleep(
                max(0.0, started + number / EVENTS_PER_SECOND - time.perf_counter())
            )


async def serve() -> None:
    options = argparse.ArgumentParser(description=__doc__)
    options.add_argument("--database-url", help="do each call's database round trip there")
    arguments = options.parse_args()
    pool: AsyncConnectionPool[Any] | None = None
    if arguments.database_url:
        pool = AsyncConnectionPool(
            arguments.database_url, min_size=2, kwargs={"autocommit": True}, open=False
        )
        await pool.open(wait=True)
    server = grpc.aio.server()
    servicer = BaselineServicer(pool)
    session_service_pb2_grpc.add_SessionServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    maker = asyncio.create_task(servicer.make_events())
    print(f"listening on 127.0.0.1:{port}", flush=True)
    try:
        await server.wait_for_termination()
    finally:
        maker.cancel()


if __name__ == "__main__":
    asyncio.run(serve())
