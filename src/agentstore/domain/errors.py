"""Domain errors: what can go wrong, independent of transport. The api layer maps each class
to one gRPC status code in one place; `reason` is the stable ErrorInfo reason clients match on."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AlreadyExists",
    "ConcurrentWrite",
    "DomainError",
    "ExpectationFailed",
    "FieldViolation",
    "InvalidArgument",
    "LimitExceeded",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "ServerShuttingDown",
    "StoreUnavailable",
    "Unauthenticated",
    "outside_scope",
    "session_already_exists",
    "session_not_found",
]


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request: `field` is its path in the request (proto field names)."""

    field: str
    description: str


class DomainError(Exception):
    """Base of every error the service reports to callers on purpose."""

    default_reason = "ERROR"

    def __init__(
        self, message: str, *, reason: str | None = None, metadata: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata = dict(metadata or {})


class InvalidArgument(DomainError):
    """The request is malformed; `violations` names each bad field."""

    default_reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation], *, reason: str | None = None) -> None:
        summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(f"invalid argument: {summary}", reason=reason)
        self.violations = violations

    @classmethod
    def of(cls, field: str, description: str) -> InvalidArgument:
        return cls([FieldViolation(field, description)])


class NotFound(DomainError):
    """The thing does not exist, or is soft-deleted or expired."""

    default_reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    """The thing to create exists already."""

    default_reason = "ALREADY_EXISTS"


class ExpectationFailed(DomainError):
    """An `expected_*` guard of the request did not hold; `metadata` carries the current value."""

    default_reason = "EXPECTATION_FAILED"


class ConcurrentWrite(DomainError):
    """The write collided with a concurrent one and was not made; the client may retry it."""

    default_reason = "CONCURRENT_WRITE"


class LimitExceeded(DomainError):
    """A configured limit was hit; `violations` names the field that is too large."""

    default_reason = "LIMIT_EXCEEDED"

    def __init__(
        self, field: str, description: str, *, reason: str | None = None, limit: int
    ) -> None:
        super().__init__(
            f"limit exceeded: {field}: {description}", reason=reason, metadata={"limit": str(limit)}
        )
        self.violations = [FieldViolation(field, description)]


class RateLimited(DomainError):
    """A key used more than its share; `retry_after_seconds` says when trying again can work."""

    default_reason = "RATE_LIMITED"

    def __init__(self, message: str, *, reason: str, retry_after_seconds: float) -> None:
        super().__init__(message, reason=reason)
        self.retry_after_seconds = retry_after_seconds


class PermissionDenied(DomainError):
    """The caller may not do this: its scope does not reach the app it names."""

    default_reason = "PERMISSION_DENIED"


class Unauthenticated(DomainError):
    """The call carries no valid credential."""

    default_reason = "UNAUTHENTICATED"


class StoreUnavailable(DomainError):
    """The database cannot be reached right now; the call may be retried."""

    default_reason = "STORE_UNAVAILABLE"


class ServerShuttingDown(DomainError):
    """The server is stopping: the client should reconnect, to this or another replica."""

    default_reason = "SERVER_SHUTTING_DOWN"


def session_not_found(session_id: str) -> NotFound:
    """What every call on a missing, soft-deleted or expired session raises."""
    return NotFound(
        f"session {session_id!r} not found",
        reason="SESSION_NOT_FOUND",
        metadata={"session_id": session_id},
    )


def session_already_exists(session_id: str) -> AlreadyExists:
    return AlreadyExists(
        f"session {session_id!r} already exists",
        reason="SESSION_ALREADY_EXISTS",
        metadata={"session_id": session_id},
    )


def outside_scope(app_name: str) -> PermissionDenied:
    """What a caller gets for naming an app its scope does not reach. It says nothing about
    whether that app has data."""
    return PermissionDenied(f"the caller may not use app {app_name!r}", reason="APP_OUTSIDE_SCOPE")
