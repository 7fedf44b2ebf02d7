"""A bare grpc.aio server with agentstore's service definition and no database: the baseline
for what gRPC in Python alone allows on this machine.

- AppendEvents only counts the messages it receives (for the single-event append figures).
- GetSession answers every request with the same small session at once, and AppendStream
  acknowledges each request at once (for the round-trip floors of bench/latency.py).
- StreamEvents follows one of 10 sessions ("s0".."s9") whose events the server makes itself,
  200 a second in total, each sent to every follower of its session as it is made; an
  event's text is its creation time (time.perf_counter), as in bench/stream.py (for the
  fan-out latency figures).

    python -m bench.grpc_baseline   # prints "listening on 127.0.0.1:PORT", serves until killed
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from agentstore.v1 import event_pb2, session_pb2, session_service_pb2_grpc
from agentstore.v1 import session_service_pb2 as pb

SESSIONS = 10
EVENTS_PER_SECOND = 200


class BaselineServicer(session_service_pb2_grpc.SessionServiceServicer):
    def __init__(self) -> None:
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
        return self._session

    async def AppendStream(  # noqa: N802 - the generated method name
        self, request_iterator: AsyncIterator[pb.AppendStreamRequest], context: Any
    ) -> AsyncIterator[pb.AppendStreamResponse]:
        async for request in request_iterator:
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
    server = grpc.aio.server()
    servicer = BaselineServicer()
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
