"""The one place where database errors become domain errors.

Every statement runs inside `Database.connection()`, which passes any psycopg error through
`translate()`: by SQLSTATE and constraint name, always chained (`raise ... from exc`), so the
cause stays in the log and never reaches a caller. An error nobody expected stays what it is:
the api layer reports it as INTERNAL with a generic message and logs its traceback."""

from __future__ import annotations

import psycopg
from psycopg import errors as pg
from psycopg_pool import PoolClosed, PoolTimeout

from agentstore.domain.errors import (
    ConcurrentWrite,
    DomainError,
    InvalidArgument,
    StoreUnavailable,
    session_already_exists,
    session_not_found,
)

__all__ = ["DOCUMENT_TOO_LARGE", "EventIdTaken", "StoreNotReady", "translate"]

# Raised by within_limit() (schema.sql); the error's COLUMN names the request field.
DOCUMENT_TOO_LARGE = "AS001"


class StoreNotReady(Exception):
    """The database cannot be served as it is; the message says what the operator can do."""


class EventIdTaken(ConcurrentWrite):
    """Another writer committed one of an append's event ids while it waited for the session
    lock. The append repository retries: a new statement sees that event as a duplicate."""


def translate(exc: psycopg.Error | PoolTimeout | PoolClosed, *, session_id: str = "") -> Exception:
    """The domain error for `exc`, or `exc` itself when it is not one the store expects.
    `session_id` names the session the statement was about, when there was one."""
    if isinstance(exc, psycopg.OperationalError | PoolTimeout | PoolClosed):
        # Lost connections, a server shutting down, a cancelled or timed-out statement.
        return StoreUnavailable("the database is unavailable; retry later")
    if isinstance(exc, pg.UniqueViolation):
        return _unique_violation(exc, session_id)
    if isinstance(exc, pg.ForeignKeyViolation):
        # An append raced a purge of its session.
        return session_not_found(session_id)
    if isinstance(exc, pg.SerializationFailure | pg.DeadlockDetected):
        return ConcurrentWrite("the write collided with another one; retry it")
    if exc.sqlstate == DOCUMENT_TOO_LARGE and exc.diag.column_name:
        return InvalidArgument.of(exc.diag.column_name, exc.diag.message_primary or "too large")
    if isinstance(exc, psycopg.DataError):
        # A value validation let through that PostgreSQL cannot hold: still the caller's input.
        return InvalidArgument.of("request", "holds a value out of the range the store can keep")
    return exc


def _unique_violation(exc: pg.UniqueViolation, session_id: str) -> DomainError | pg.UniqueViolation:
    constraint = exc.diag.constraint_name
    if constraint == "sessions_pkey":
        return session_already_exists(session_id)
    if constraint == "events_session_event_id_key":
        return EventIdTaken("an event id was stored by a concurrent append; retry it")
    return exc
