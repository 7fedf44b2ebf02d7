"""The one place where errors become gRPC statuses.

Domain errors map to their code with a `google.rpc.Status` carrying an `ErrorInfo` (stable
reason) and, for bad input, a `BadRequest` naming the fields. Anything else is a bug: it is
logged with its traceback and the caller gets INTERNAL with a generic message."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any, TypeVar, cast

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from agentstore.api.decoding import UNDECODABLE, undecodable_request
from agentstore.api.open_calls import SHUTDOWN_MESSAGE, OpenCalls
from agentstore.domain.errors import (
    AlreadyExists,
    ConcurrentWrite,
    DomainError,
    ExpectationFailed,
    InvalidArgument,
    LimitExceeded,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerShuttingDown,
    StoreUnavailable,
    Unauthenticated,
)
from agentstore.domain.ids import SAFE_ID_PATTERN, new_uuid7
from agentstore.logs import REQUEST_ID
from agentstore.metrics import METRICS
from agentstore.tracing import Tracing
from agentstore.v1 import session_service_pb2

__all__ = ["ERROR_DOMAIN", "handle_errors", "rich_status", "status_for"]

log = logging.getLogger(__name__)

ERROR_DOMAIN = "agentstore.dev"
# A request id a caller may give (x-request-id) goes into logs: the ids' alphabet, and short.
MAX_REQUEST_ID_LENGTH = 128

_CODES: dict[type[DomainError], int] = {
    InvalidArgument: code_pb2.INVALID_ARGUMENT,
    NotFound: code_pb2.NOT_FOUND,
    AlreadyExists: code_pb2.ALREADY_EXISTS,
    ExpectationFailed: code_pb2.ABORTED,
    ConcurrentWrite: code_pb2.ABORTED,
    LimitExceeded: code_pb2.RESOURCE_EXHAUSTED,
    PermissionDenied: code_pb2.PERMISSION_DENIED,
    RateLimited: code_pb2.RESOURCE_EXHAUSTED,
    Unauthenticated: code_pb2.UNAUTHENTICATED,
    StoreUnavailable: code_pb2.UNAVAILABLE,
    ServerShuttingDown: code_pb2.UNAVAILABLE,
}


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def status_for(error: DomainError) -> grpc.Status:
    """The gRPC status, with rich details, that reports `error`."""
    return rpc_status.to_status(rich_status(error))


def rich_status(error: DomainError) -> status_pb2.Status:
    """`error` as a google.rpc.Status: its code, message, an ErrorInfo (stable reason) and,
    for bad input or a limit, a BadRequest naming the fields."""
    code = next(
        (code for kind, code in _CODES.items() if isinstance(error, kind)), code_pb2.INTERNAL
    )
    details = [
        _pack(
            error_details_pb2.ErrorInfo(
                reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata
            )
        )
    ]
    if isinstance(error, InvalidArgument | LimitExceeded):
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=violation.field, description=violation.description
                        )
                        for violation in error.violations
                    ]
                )
            )
        )
    if isinstance(error, RateLimited):
        delay = duration_pb2.Duration()
        delay.FromTimedelta(timedelta(seconds=error.retry_after_seconds))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    return status_pb2.Status(code=code, message=error.message, details=details)


def _status_of(error: Exception) -> grpc.Status:
    """The status that ends a call that raised `error`; anything but a domain error is a bug,
    logged with its traceback and reported as INTERNAL."""
    if isinstance(error, DomainError):
        return status_for(error)
    log.exception("unexpected error in a call", exc_info=error)
    return status_for(DomainError("internal error; see the server log"))


async def _abort(
    context: grpc.aio.ServicerContext[Any, Any], error: Exception, outcome: list[grpc.StatusCode]
) -> None:
    status = _status_of(error)
    outcome.append(status.code)  # for the call's log line: abort raises
    await context.abort(status.code, status.details, status.trailing_metadata)


HandlerT = TypeVar("HandlerT", bound=Callable[..., Any])


def handle_errors(handler: HandlerT) -> HandlerT:
    """Wrap a servicer method (unary or streaming) so its errors become statuses. The servicer
    has `open_calls`, where each call counts as open while it runs: a stopping server ends
    those still open with UNAVAILABLE."""
    if inspect.isasyncgenfunction(handler):

        @functools.wraps(handler)
        async def stream_wrapper(
            self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            labels = _method_labels(handler.__name__)
            with _served(self, handler.__name__, context) as outcome:
                try:
                    if request is UNDECODABLE:
                        raise undecodable_request()
                    async for response in handler(self, _counted(request, labels), context):
                        METRICS.count(MSG_SENT, labels)
                        yield response
                except grpc.aio.AbortError:
                    raise
                except (asyncio.CancelledError, Exception) as exc:
                    await _end_failed(context, exc, self.open_calls, outcome)

        return cast(HandlerT, stream_wrapper)

    @functools.wraps(handler)
    async def unary_wrapper(
        self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        labels = _method_labels(handler.__name__)
        with _served(self, handler.__name__, context) as outcome:
            try:
                if request is UNDECODABLE:
                    raise undecodable_request()
                response = await cast(Callable[..., Awaitable[Any]], handler)(
                    self, _counted(request, labels), context
                )
                METRICS.count(MSG_SENT, labels)
                return response
            except grpc.aio.AbortError:
                raise
            except (asyncio.CancelledError, Exception) as exc:
                await _end_failed(context, exc, self.open_calls, outcome)

    return cast(HandlerT, unary_wrapper)


@contextlib.contextmanager
def _served(
    servicer: Any, method: str, context: grpc.aio.ServicerContext[Any, Any]
) -> Iterator[list[grpc.StatusCode]]:
    """What every call runs within: its log line and request id, its place among the
    servicer's open calls, and its span when tracing is on. Yields where the call's code
    goes (empty: OK)."""
    with (
        _call_log(method, context) as outcome,
        servicer.open_calls.track(),
        _traced(servicer.tracing, method, context, outcome),
    ):
        yield outcome


async def _end_failed(
    context: grpc.aio.ServicerContext[Any, Any],
    error: BaseException,
    calls: OpenCalls,
    outcome: list[grpc.StatusCode],
) -> None:
    """End a call that raised `error` with its status. A cancellation is the call's end
    (raised again), unless the stopping server is ending its open calls: UNAVAILABLE then."""
    if isinstance(error, asyncio.CancelledError):
        if not calls.ending:
            raise error
        calls.ended()
        error = ServerShuttingDown(SHUTDOWN_MESSAGE)
    assert isinstance(error, Exception)
    await _abort(context, error, outcome)


_UNTRACED = contextlib.nullcontext()


def _traced(
    tracing: Tracing | None,
    method: str,
    context: grpc.aio.ServicerContext[Any, Any],
    outcome: list[grpc.StatusCode],
) -> contextlib.AbstractContextManager[None]:
    """The call's span when tracing is on; when off, a shared no-op."""
    if tracing is None:
        return _UNTRACED
    return _call_span(tracing, method, context, outcome)


@contextlib.contextmanager
def _call_span(
    tracing: Tracing,
    method: str,
    context: grpc.aio.ServicerContext[Any, Any],
    outcome: list[grpc.StatusCode],
) -> Iterator[None]:
    """The call's span, with the code the call ended with."""
    with tracing.call(method, context.invocation_metadata()) as span:
        try:
            yield
        finally:
            tracing.end_call(span, (outcome[-1] if outcome else grpc.StatusCode.OK).name)


@contextlib.contextmanager
def _call_log(
    method: str, context: grpc.aio.ServicerContext[Any, Any]
) -> Iterator[list[grpc.StatusCode]]:
    """The call's request id (the caller's `x-request-id`, or a new one) for every line it
    logs, and at DEBUG one line when it ends: method, code, milliseconds."""
    given = next(
        (value for key, value in context.invocation_metadata() or () if key == "x-request-id"),
        "",
    )
    request_id = ""
    if isinstance(given, str) and len(given) <= MAX_REQUEST_ID_LENGTH:
        request_id = given if SAFE_ID_PATTERN.fullmatch(given) else ""
    token = REQUEST_ID.set(request_id or new_uuid7())
    labels = _method_labels(method)
    METRICS.count(STARTED, labels)
    started = time.perf_counter()
    outcome: list[grpc.StatusCode] = []
    try:
        yield outcome
    except asyncio.CancelledError:
        outcome.append(grpc.StatusCode.CANCELLED)
        raise
    finally:
        code = outcome[-1] if outcome else grpc.StatusCode.OK
        METRICS.count(HANDLED, (*labels, ("grpc_code", code.name)))
        METRICS.observe(HANDLING_SECONDS, labels, time.perf_counter() - started)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "call",
                extra={
                    "method": method,
                    "code": code.name,
                    "ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
        with contextlib.suppress(ValueError):  # a stream finalised in another context
            REQUEST_ID.reset(token)


STARTED = "grpc_server_started_total"
HANDLED = "grpc_server_handled_total"
MSG_RECEIVED = "grpc_server_msg_received_total"
MSG_SENT = "grpc_server_msg_sent_total"
HANDLING_SECONDS = "grpc_server_handling_seconds"
_SERVICE = session_service_pb2.DESCRIPTOR.services_by_name["SessionService"]


@functools.cache
def _method_labels(method: str) -> tuple[tuple[str, str], ...]:
    """The standard labels of an RPC: its type, service and method."""
    descriptor = _SERVICE.methods_by_name[method]
    kind = {
        (False, False): "unary",
        (False, True): "server_stream",
        (True, False): "client_stream",
        (True, True): "bidi_stream",
    }[(descriptor.client_streaming, descriptor.server_streaming)]
    return (
        ("grpc_type", kind),
        ("grpc_service", _SERVICE.full_name),
        ("grpc_method", method),
    )


def _counted(request: Any, labels: tuple[tuple[str, str], ...]) -> Any:
    """The request, its messages counted as they are read."""
    if not hasattr(request, "__aiter__"):
        METRICS.count(MSG_RECEIVED, labels)
        return request

    async def counting() -> AsyncIterator[Any]:
        async for message in request:
            METRICS.count(MSG_RECEIVED, labels)
            yield message

    return counting()
