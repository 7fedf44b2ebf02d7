"""Sessions: the resource, the inputs that create and change it, and the rules on them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo

from agentstore.domain.ids import SAFE_ID_PATTERN
from agentstore.domain.limits import Limits

__all__ = [
    "MAX_TTL",
    "Identifier",
    "JsonObject",
    "NewSession",
    "OptionalIdentifier",
    "Session",
    "SessionFilter",
    "SessionPatch",
    "SessionStatus",
    "StoreStats",
    "encode_json_object",
    "limits_of",
]


class SessionStatus(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"


def limits_of(info: ValidationInfo) -> Limits:
    """The limits passed as validation context, or the defaults."""
    context = info.context or {}
    limits = context.get("limits")
    return limits if isinstance(limits, Limits) else Limits()


def _check_identifier(value: str, info: ValidationInfo) -> str:
    if value == "":
        return value
    max_length = limits_of(info).max_id_length
    if len(value) > max_length:
        raise ValueError(f"must be at most {max_length} characters")
    if not SAFE_ID_PATTERN.fullmatch(value):
        raise ValueError("may only contain letters, digits and . _ : @ + -")
    return value


def _check_required_identifier(value: str, info: ValidationInfo) -> str:
    if value == "":
        raise ValueError("is required")
    return _check_identifier(value, info)


# Compact, UTF-8 as is, and strict: JSON has no NaN or infinity. Built once: json.dumps with
# options builds a new encoder on every call.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode_json_object(value: Any) -> str:
    """`value` as compact JSON, checked: an object, NUL-free, finite numbers. Its size is
    measured by the store (document_bytes() in schema.sql), the one measure of the limits."""
    if not isinstance(value, dict):
        raise ValueError("must be an object")
    try:
        encoded = _COMPACT_JSON.encode(value)
    except ValueError:
        raise ValueError("must not contain NaN or infinite numbers (JSON has none)") from None
    except TypeError as exc:
        raise ValueError(f"must hold only JSON values: {exc}") from None
    if "\\u0000" in encoded:
        raise ValueError("must not contain the NUL character (U+0000)")
    return encoded


def _check_json_object(value: dict[str, Any]) -> dict[str, Any]:
    encode_json_object(value)
    return value


# The longest ttl: an expiry must stay within what a protobuf Timestamp (and a client) can
# represent, up to 9999-12-31; a thousand years keeps it there for millennia to come.
MAX_TTL = timedelta(days=365_000)


def _check_ttl(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be positive")
    if value > MAX_TTL:
        raise ValueError(f"must be at most {MAX_TTL.days} days")
    return value


# An id or name of the safe alphabet; empty means "not given" where the field is optional.
OptionalIdentifier = Annotated[str, AfterValidator(_check_identifier)]
Identifier = Annotated[str, AfterValidator(_check_required_identifier)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_check_json_object)]
Ttl = Annotated[timedelta, AfterValidator(_check_ttl)]

# How far ahead of this server's clock a kept time may be: an import's times come from other
# machines, whose clocks may run a little ahead.
MAX_CLOCK_SKEW = timedelta(minutes=5)


def _check_kept_time(value: datetime) -> datetime:
    if value > datetime.now(UTC) + MAX_CLOCK_SKEW:
        raise ValueError("must not be in the future")
    return value


# A creation time the client gives to keep (an imported session's or event's), instead of
# the server's now.
KeptTime = Annotated[datetime, AfterValidator(_check_kept_time)]


@dataclass(frozen=True, slots=True)
class Session:
    """A stored session, as read from the store."""

    id: str
    app_name: str
    user_id: str
    agent_id: str
    status: SessionStatus
    metadata: dict[str, Any]
    state: dict[str, Any]
    version: int
    last_seq: int
    event_count: int
    # Events RemoveEvents took back: it only grows while the session lives.
    removed_count: int
    create_time: datetime
    update_time: datetime
    expire_time: datetime | None
    delete_time: datetime | None
    # The summary kept by appends: the first user message's preview ('' before one) and when
    # the newest event was appended.
    preview: str = ""
    last_event_time: datetime | None = None
    # The state of the session's app and of its user; None unless the read asked for them.
    app_state: dict[str, Any] | None = None
    user_state: dict[str, Any] | None = None


class _Input(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NewSession(_Input):
    """What CreateSession asks for. An empty `session_id` means the server makes one."""

    session_id: OptionalIdentifier = ""
    app_name: Identifier
    user_id: OptionalIdentifier = ""
    agent_id: OptionalIdentifier = ""
    status: SessionStatus = SessionStatus.ACTIVE
    metadata: JsonObject = Field(default_factory=dict)
    state: JsonObject = Field(default_factory=dict)
    ttl: Ttl | None = None
    # Kept instead of now (an import); only an admin may set it.
    create_time: KeptTime | None = None


class SessionPatch(_Input):
    """What UpdateSession changes: only the fields named in `fields` are applied.

    `expire_time` and `ttl` both set the expiry; with `expire_time` in `fields` and both unset,
    the session stops expiring."""

    session_id: Identifier
    fields: frozenset[str]
    status: SessionStatus | None = None
    metadata: JsonObject = Field(default_factory=dict)
    state_delta: JsonObject = Field(default_factory=dict)
    expire_time: datetime | None = None
    ttl: Ttl | None = None
    expected_version: int | None = None


class StatePatch(_Input):
    """What UpdateState changes: the state of an app (empty `user_id`) or of one of its users."""

    app_name: Identifier
    user_id: OptionalIdentifier = ""
    state_delta: JsonObject = Field(default_factory=dict)
    expected_version: int | None = Field(default=None, ge=0)


@dataclass(frozen=True, slots=True)
class ScopedState:
    """The state of an app (empty `user_id`) or of one user of an app; version 0 and no
    update_time when nothing was ever set."""

    app_name: str
    user_id: str
    state: dict[str, Any]
    version: int
    update_time: datetime | None


class SessionFilter(_Input):
    """Which sessions ListSessions returns: empty strings match everything."""

    app_name: OptionalIdentifier = ""
    user_id: OptionalIdentifier = ""
    agent_id: OptionalIdentifier = ""
    status: SessionStatus | None = None
    show_deleted: bool = False


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Counts over the sessions of the store or of one app."""

    total_sessions: int
    active_sessions: int
    deleted_sessions: int
    expired_sessions: int
    total_events: int
    active_sessions_by_status: dict[str, int]

    @property
    def average_events_per_session(self) -> float:
        return self.total_events / self.total_sessions if self.total_sessions else 0.0
