"""Property: whatever a client sends to any RPC, the answer is a result or a clear status.

Requests for every RPC are generated from the protos' descriptors (tests/proto_strategies.py)
and sent through a real server, as are bytes no encoder would make. Never INTERNAL or UNKNOWN,
no status message with SQL or exception text, and afterwards every session the requests
touched still reads back whole."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentstore.app import AgentStoreServer
from agentstore.v1 import session_service_pb2 as pb
from agentstore.v1.session_service_pb2_grpc import SessionServiceStub
from tests.e2e.events_support import append, event, message
from tests.proto_strategies import raw_bytes, requests_of

SERVICE = pb.DESCRIPTOR.services_by_name["SessionService"]
CASES_PER_RPC = 250
CLEAR = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
# What would give away the implementation in a status message.
LEAKS = re.compile(
    r"SELECT|INSERT|UPDATE |DELETE FROM|psycopg|Traceback|Exception|ERROR:|"
    r"DecodeError|jsonb|sqlstate|\.py\b",
    re.IGNORECASE,
)
# Values of the request echoed back ('...' or "...", as repr writes them) are the client's own.
QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
CALL_SECONDS = 20


def leaks(message: str) -> bool:
    return LEAKS.search(QUOTED.sub("", message)) is not None


async def _outcome(
    stub: SessionServiceStub, method: str, request: Any
) -> grpc.aio.AioRpcError | None:
    """Sends one request (a list of messages for AppendEvents); None when it succeeded."""
    call: Any = getattr(stub, method)
    try:
        if method == "AppendEvents":
            await call(iter(request), timeout=CALL_SECONDS)
        elif method == "AppendStream":
            acks = [ack async for ack in call(iter(request), timeout=CALL_SECONDS)]
            # One acknowledgement per request, each a result or a clear error.
            assert len(acks) == len(request), (len(acks), len(request))
            for ack in acks:
                code = grpc.StatusCode.OK
                if ack.HasField("error"):
                    code = next(c for c in grpc.StatusCode if c.value[0] == ack.error.code)
                assert code in CLEAR, f"{code.name} acknowledged: {ack.error.message}"
                assert not leaks(ack.error.message), ack.error.message
        elif method == "StreamEvents":
            # A follower never ends by itself: read until it is caught up, then leave.
            stream = call(request, timeout=CALL_SECONDS)
            async for response in stream:
                if response.caught_up:
                    stream.cancel()
                    break
        else:
            await call(request, timeout=CALL_SECONDS)
    except grpc.aio.AioRpcError as error:
        return error
    return None


async def _raw_outcome(
    channel: grpc.aio.Channel, method: Any, raw: bytes
) -> grpc.aio.AioRpcError | None:
    path = f"/{SERVICE.full_name}/{method.name}"
    identity: Callable[[bytes], bytes] = lambda data: data  # noqa: E731
    try:
        if method.client_streaming and method.server_streaming:
            call = channel.stream_stream(path, identity, identity)
            async for _ in call(iter([raw]), timeout=CALL_SECONDS):
                pass
        elif method.client_streaming:
            await channel.stream_unary(path, identity, identity)(iter([raw]), timeout=CALL_SECONDS)
        elif method.server_streaming:
            async for _ in channel.unary_stream(path, identity, identity)(
                raw, timeout=CALL_SECONDS
            ):
                break
        else:
            await channel.unary_unary(path, identity, identity)(raw, timeout=CALL_SECONDS)
    except grpc.aio.AioRpcError as error:
        return error
    return None


def _check(error: grpc.aio.AioRpcError | None, described: str, codes: Counter[str]) -> None:
    code = grpc.StatusCode.OK if error is None else error.code()
    codes[code.name] += 1
    assert code in CLEAR, f"{code.name} for {described}: {error.details() if error else ''}"
    if error is not None:
        details = error.details() or ""
        assert not leaks(details), f"status message leaks: {details!r} for {described}"


async def test_no_request_to_any_rpc_gets_an_unclear_status(
    server: AgentStoreServer, channel: grpc.aio.Channel, stub: SessionServiceStub
) -> None:
    app_name = f"fuzz-{uuid.uuid4().hex[:8]}"
    known_ids = []
    for index in range(3):
        session = await stub.CreateSession(
            pb.CreateSessionRequest(app_name=app_name, session_id=f"{app_name}-{index}")
        )
        await append(stub, message(session.id, [event("seed text"), event("more")]))
        known_ids.append(session.id)
    loop = asyncio.get_running_loop()
    codes: Counter[str] = Counter()
    started = time.monotonic()

    def run(coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(CALL_SECONDS * 2)

    def generated_requests_for(method: Any) -> None:
        request = requests_of(method.input_type, known_ids, [app_name])
        strategy: st.SearchStrategy[Any] = (
            st.lists(request, min_size=1, max_size=3) if method.client_streaming else request
        )

        @settings(
            max_examples=CASES_PER_RPC,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(strategy)
        def case(value: Message | list[Message]) -> None:
            error = run(_outcome(stub, method.name, value))
            _check(error, f"{method.name}({value!r:.300})", codes)

        case()

    def raw_requests_for(method: Any) -> None:
        @settings(
            max_examples=CASES_PER_RPC // 5,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(raw_bytes())
        def case(raw: bytes) -> None:
            error = run(_raw_outcome(channel, method, raw))
            _check(error, f"{method.name} raw {raw[:60]!r}", codes)

        case()

    for method in SERVICE.methods:
        await asyncio.to_thread(generated_requests_for, method)
        await asyncio.to_thread(raw_requests_for, method)

    elapsed = time.monotonic() - started
    total = sum(codes.values())
    print(f"\n{total} requests in {elapsed:.1f} s over {len(SERVICE.methods)} RPCs: {dict(codes)}")
    assert total >= len(SERVICE.methods) * CASES_PER_RPC
    # Whatever the requests did, every session they could reach still reads back whole: the
    # listing decodes every row, deleted ones included, and the live ones read in full.
    everything = await stub.ListSessions(
        pb.ListSessionsRequest(app_name=app_name, show_deleted=True, page_size=1000)
    )
    live = await stub.ListSessions(pb.ListSessionsRequest(app_name=app_name, page_size=1000))
    assert {s.id for s in live.sessions} <= {s.id for s in everything.sessions}
    for session in live.sessions:
        again = await stub.GetSession(pb.GetSessionRequest(session_id=session.id))
        assert again.state == session.state
        events = await stub.ListEvents(pb.ListEventsRequest(session_id=session.id))
        assert all(e.session_id == session.id for e in events.events)
    assert server.open_streams == 0
