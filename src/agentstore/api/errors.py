"""The one place where errors become gRPC statuses.

Domain errors map to their code with a `google.rpc.Status` carrying an `ErrorInfo` (stable
reason) and, for bad input, a `BadRequest` naming the fields. Anything else is a bug: it is
logged with its traceback and the caller gets INTERNAL with a generic message."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar, cast

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from agentstore.api.decoding import UNDECODABLE, undecodable_request
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

__all__ = ["ERROR_DOMAIN", "handle_errors", "rich_status", "status_for"]

log = logging.getLogger(__name__)

ERROR_DOMAIN = "agentstore.dev"

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


async def _abort(context: grpc.aio.ServicerContext[Any, Any], error: Exception) -> None:
    if isinstance(error, DomainError):
        status = status_for(error)
    else:
        log.exception("unexpected error in a call", exc_info=error)
        status = status_for(DomainError("internal error; see the server log"))
    await context.abort(status.code, status.details, status.trailing_metadata)


HandlerT = TypeVar("HandlerT", bound=Callable[..., Any])


def handle_errors(handler: HandlerT) -> HandlerT:
    """Wrap a servicer method (unary or streaming) so its errors become statuses."""
    if inspect.isasyncgenfunction(handler):

        @functools.wraps(handler)
        async def stream_wrapper(
            self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            try:
                if request is UNDECODABLE:
                    raise undecodable_request()
                async for response in handler(self, request, context):
                    yield response
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _abort(context, exc)

        return cast(HandlerT, stream_wrapper)

    @functools.wraps(handler)
    async def unary_wrapper(
        self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        try:
            if request is UNDECODABLE:
                raise undecodable_request()
            return await cast(Callable[..., Awaitable[Any]], handler)(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, exc)

    return cast(HandlerT, unary_wrapper)
