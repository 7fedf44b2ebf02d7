"""What each use case takes from the transport: typed, not yet validated fields.

The api layer fills these from protobuf messages; the services validate them into the domain
models (domain/) under the configured limits. TypedDicts, so that mypy checks both sides and
the append path, which builds one per event, pays nothing for them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, TypedDict

__all__ = [
    "AppendFields",
    "ContentFields",
    "CreateSessionFields",
    "EventFields",
    "EventListFields",
    "SearchFields",
    "SessionListFields",
    "StreamFields",
    "UpdateSessionFields",
]

# A status as the service takes it: the domain value ("active", ...), None for unset.
Status = str | None


class CreateSessionFields(TypedDict):
    session_id: str
    app_name: str
    user_id: str
    agent_id: str
    metadata: dict[str, Any]
    state: dict[str, Any]
    status: Status
    ttl: timedelta | None
    create_time: datetime | None


class RemovalFields(TypedDict):
    session_id: str
    mode: str
    first: int
    last: int
    invocation_id: str
    expected_last_seq: int | None


class UpdateStateFields(TypedDict):
    app_name: str
    user_id: str
    state_delta: dict[str, Any]
    expected_version: int | None


class UpdateSessionFields(TypedDict):
    session_id: str
    fields: frozenset[str]
    status: Status
    metadata: dict[str, Any]
    state_delta: dict[str, Any]
    expire_time: datetime | None
    ttl: timedelta | None
    expected_version: int | None


class SessionListFields(TypedDict):
    app_name: str
    user_id: str
    agent_id: str
    status: Status
    show_deleted: bool


class ContentFields(TypedDict):
    role: str
    text: str


class EventFields(TypedDict):
    event_id: str
    type: str
    author: str
    invocation_id: str
    agent_id: str
    branch: str
    size_bytes: int
    content: ContentFields | None
    data: dict[str, Any] | None
    actions: dict[str, dict[str, Any]] | None
    metadata: dict[str, Any] | None
    create_time: datetime | None
    encoded: bytes | None


class AppendFields(TypedDict):
    session_id: str
    events: list[EventFields]
    size_bytes: int
    expected_last_seq: int | None


class EventListFields(TypedDict):
    session_id: str
    after_seq: int
    before_seq: int
    types: list[str]
    author: str
    agent_id: str
    invocation_id: str
    branch: str
    descending: bool
    start_time: datetime | None
    end_time: datetime | None


class SearchFields(TypedDict):
    query: str
    app_name: str
    user_id: str
    agent_id: str
    session_id: str
    types: list[str]
    author: str
    start_time: datetime | None
    end_time: datetime | None


class StreamFields(TypedDict):
    session_id: str
    after_seq: int
    app_name: str
    user_id: str
    agent_id: str
    types: list[str]
    follow: bool
    resume_token: str
