"""Errors of agentstore calls, named for what happened.

Every failed call raises a subclass of `AgentstoreError` carrying the status code, the server's
message, the stable `reason` of its ErrorInfo (`SESSION_NOT_FOUND`, `LAST_SEQ_MISMATCH`, ...)
and the ErrorInfo's metadata. The subclasses add what a caller acts on: the field violations of
an `InvalidArgument`, the session's current `last_seq` or `version` of a `Conflict`, the retry
delay of a `ResourceExhausted`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

__all__ = [
    "AgentstoreError",
    "AlreadyExists",
    "Cancelled",
    "Conflict",
    "DeadlineExceeded",
    "FieldViolation",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "ServerError",
    "Unauthenticated",
    "Unavailable",
    "error_from_rpc",
    "error_from_status",
    "is_transient",
]


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field of a request: its path (`events[0].data.delta`) and what is wrong."""

    field: str
    description: str


class AgentstoreError(Exception):
    """A call failed. `code` is the gRPC status code; `reason` and `metadata` come from the
    error's ErrorInfo (empty when the server sent none)."""

    code = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        reason: str = "",
        metadata: dict[str, str] | None = None,
        details: tuple[Any, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})
        self.details = details

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


class InvalidArgument(AgentstoreError):
    """The request was malformed or broke a rule; `violations` names each bad field."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    @property
    def violations(self) -> tuple[FieldViolation, ...]:
        return _violations(self.details)


class NotFound(AgentstoreError):
    """The session does not exist, is deleted or expired, or is outside the caller's apps."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(AgentstoreError):
    """A session with that id exists already."""

    code = grpc.StatusCode.ALREADY_EXISTS


class Conflict(AgentstoreError):
    """A guard did not hold: `expected_last_seq` or `expected_version` was stale, or the write
    collided with another one. `last_seq` or `version` is the session's current value when the
    server reported it."""

    code = grpc.StatusCode.ABORTED

    @property
    def last_seq(self) -> int | None:
        return _int_or_none(self.metadata.get("last_seq"))

    @property
    def version(self) -> int | None:
        return _int_or_none(self.metadata.get("current_version"))


class ResourceExhausted(AgentstoreError):
    """A limit was reached (a size, the server's streams, the key's rate). `retry_delay` says
    when to try again, for a rate limit."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    @property
    def retry_delay(self) -> timedelta | None:
        for detail in self.details:
            if isinstance(detail, error_details_pb2.RetryInfo):
                delay: timedelta = detail.retry_delay.ToTimedelta()
                return delay
        return None

    @property
    def violations(self) -> tuple[FieldViolation, ...]:
        """The field whose limit was passed, for a size limit."""
        return _violations(self.details)


class Unauthenticated(AgentstoreError):
    """No API key, or one the server does not know (or that was revoked)."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(AgentstoreError):
    """The key may not do this: another app, or a role too low for the call."""

    code = grpc.StatusCode.PERMISSION_DENIED


class Unavailable(AgentstoreError):
    """The server or its database cannot be reached now; safe calls were retried already."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(AgentstoreError):
    """The call took longer than its timeout."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(AgentstoreError):
    """The call was cancelled."""

    code = grpc.StatusCode.CANCELLED


class ServerError(AgentstoreError):
    """Any other status (INTERNAL, UNKNOWN, UNIMPLEMENTED, ...): `code` says which."""

    def __init__(self, code: grpc.StatusCode, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.code = code


_BY_CODE: dict[grpc.StatusCode, type[AgentstoreError]] = {
    kind.code: kind
    for kind in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        Conflict,
        ResourceExhausted,
        Unauthenticated,
        PermissionDenied,
        Unavailable,
        DeadlineExceeded,
        Cancelled,
    )
}
_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}

_DETAIL_TYPES = (
    error_details_pb2.ErrorInfo,
    error_details_pb2.BadRequest,
    error_details_pb2.RetryInfo,
)


def error_from_status(status: status_pb2.Status) -> AgentstoreError:
    """The exception for a google.rpc.Status (an AppendStream response's `error`, or a call's
    rich status)."""
    details: list[Any] = []
    for packed in status.details:
        for kind in _DETAIL_TYPES:
            if packed.Is(kind.DESCRIPTOR):
                detail = kind()
                packed.Unpack(detail)
                details.append(detail)
    info = next((d for d in details if isinstance(d, error_details_pb2.ErrorInfo)), None)
    reason = info.reason if info is not None else ""
    metadata = dict(info.metadata) if info is not None else {}
    code = _BY_NUMBER.get(status.code, grpc.StatusCode.UNKNOWN)
    kind = _BY_CODE.get(code)
    if kind is None:
        return ServerError(
            code, status.message, reason=reason, metadata=metadata, details=tuple(details)
        )
    return kind(status.message, reason=reason, metadata=metadata, details=tuple(details))


def error_from_rpc(error: grpc.RpcError) -> AgentstoreError:
    """The exception for a failed gRPC call, with its rich details when the server sent some."""
    call: Any = error
    status = None
    try:
        status = rpc_status.from_call(call)
    except ValueError:  # details that do not match the code and message: use the plain status
        status = None
    if status is None:
        status = status_pb2.Status(code=call.code().value[0], message=call.details() or "")
    return error_from_status(status)


# What grpc's C core reports, as INTERNAL, for a call whose connection broke under it (a
# server killed mid-stream, seen in about one run in five of tests/client/test_failover.py):
# a transport failure, not the server's answer.
_CORE_TRANSPORT_FAILURE = "Internal error from Core"


def is_transient(error: AgentstoreError) -> bool:
    """Whether the call failed for want of a connection (UNAVAILABLE, or the core's INTERNAL
    for a connection that broke under the call): a call safe to repeat may be sent again."""
    if isinstance(error, Unavailable):
        return True
    return error.code == grpc.StatusCode.INTERNAL and error.message == _CORE_TRANSPORT_FAILURE


def _violations(details: tuple[Any, ...]) -> tuple[FieldViolation, ...]:
    return tuple(
        FieldViolation(violation.field, violation.description)
        for detail in details
        if isinstance(detail, error_details_pb2.BadRequest)
        for violation in detail.field_violations
    )


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None
