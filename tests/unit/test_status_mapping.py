"""The one error -> status mapping: each domain error has its code and details; anything else
is INTERNAL with nothing of the error in it."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from agentstore.api.errors import ERROR_DOMAIN, status_for
from agentstore.domain.errors import (
    AlreadyExists,
    ConcurrentWrite,
    DomainError,
    ExpectationFailed,
    FieldViolation,
    InvalidArgument,
    LimitExceeded,
    PermissionDenied,
    ServerShuttingDown,
    StoreUnavailable,
    outside_scope,
    session_not_found,
)


def decoded(status: grpc.Status) -> status_pb2.Status:
    (key, value) = status.trailing_metadata[0]
    assert key == "grpc-status-details-bin"
    return status_pb2.Status.FromString(value)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidArgument.of("state", "bad"), grpc.StatusCode.INVALID_ARGUMENT),
        (session_not_found("s-1"), grpc.StatusCode.NOT_FOUND),
        (AlreadyExists("taken"), grpc.StatusCode.ALREADY_EXISTS),
        (ExpectationFailed("stale"), grpc.StatusCode.ABORTED),
        (ConcurrentWrite("collided"), grpc.StatusCode.ABORTED),
        (LimitExceeded("events", "many", limit=3), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (outside_scope("other-app"), grpc.StatusCode.PERMISSION_DENIED),
        (PermissionDenied("no"), grpc.StatusCode.PERMISSION_DENIED),
        (StoreUnavailable("away"), grpc.StatusCode.UNAVAILABLE),
        (ServerShuttingDown("bye"), grpc.StatusCode.UNAVAILABLE),
        (DomainError("internal error; see the server log"), grpc.StatusCode.INTERNAL),
    ],
)
def test_each_error_has_its_code_and_reason(error: DomainError, code: grpc.StatusCode) -> None:
    status = status_for(error)
    assert status.code == code
    assert status.details == error.message
    info = error_details_pb2.ErrorInfo()
    assert decoded(status).details[0].Unpack(info)
    assert (info.reason, info.domain) == (error.reason, ERROR_DOMAIN)


def test_bad_input_names_every_field() -> None:
    error = InvalidArgument(
        [FieldViolation("events[0].type", "is required"), FieldViolation("ttl", "too long")]
    )
    bad_request = error_details_pb2.BadRequest()
    assert decoded(status_for(error)).details[1].Unpack(bad_request)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        ("events[0].type", "is required"),
        ("ttl", "too long"),
    ]


def test_not_found_carries_the_session_id() -> None:
    info = error_details_pb2.ErrorInfo()
    decoded(status_for(session_not_found("s-9"))).details[0].Unpack(info)
    assert dict(info.metadata) == {"session_id": "s-9"}
