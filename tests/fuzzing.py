"""Sending generated requests to every RPC of a running server and checking each answer.

Used by tests/e2e/test_any_request.py (a short run in every test run) and bench/fuzz.py (long
runs): requests come from the protos' descriptors (tests/proto_strategies.py), plus bytes no
encoder would make. Every answer must be a result or a clear status, never INTERNAL or
UNKNOWN, and no status message may carry implementation text."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentstore.v1 import session_service_pb2 as pb
from agentstore.v1.session_service_pb2_grpc import SessionServiceStub
from tests.proto_strategies import raw_bytes, requests_of

__all__ = ["SERVICE", "fuzz_every_rpc"]

SERVICE = pb.DESCRIPTOR.services_by_name["SessionService"]
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


async def fuzz_every_rpc(
    stub: SessionServiceStub,
    channel: grpc.aio.Channel,
    known_ids: list[str],
    app_name: str,
    cases_per_rpc: int,
) -> dict[str, Counter[str]]:
    """Send `cases_per_rpc` generated requests and a fifth as many raw byte strings to every
    RPC; returns the count of each status code by RPC. Raises AssertionError, naming the
    request, at the first unclear answer."""
    by_rpc: dict[str, Counter[str]] = {}
    loop = asyncio.get_running_loop()

    def run(coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(CALL_SECONDS * 2)

    def generated_requests_for(method: Any) -> None:
        codes = by_rpc.setdefault(method.name, Counter())
        request = requests_of(method.input_type, known_ids, [app_name])
        strategy: st.SearchStrategy[Any] = (
            st.lists(request, min_size=1, max_size=3) if method.client_streaming else request
        )

        @settings(
            max_examples=cases_per_rpc,
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
        codes = by_rpc.setdefault(method.name, Counter())

        @settings(
            max_examples=max(1, cases_per_rpc // 5),
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

    return by_rpc
