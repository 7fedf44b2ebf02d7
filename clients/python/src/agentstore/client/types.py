"""What the client returns: immutable objects whose attributes are the proto's field names, with
plain Python values (dicts for Structs, aware datetimes, enums by name)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from agentstore.client.convert import (
    dict_from_struct,
    struct_from_dict,
    time_from_timestamp,
    timestamp_from_time,
)
from agentstore.client.event_data import WELL_KNOWN_TYPES, EventData
from agentstore.v1 import event_pb2, session_pb2, session_service_pb2

__all__ = [
    "AppendResult",
    "Content",
    "Event",
    "EventActions",
    "RemovalResult",
    "ScopedState",
    "SearchHit",
    "Session",
    "SessionStats",
    "SessionStatus",
    "SessionView",
    "StoreStats",
    "event_to_proto",
]


class SessionStatus(enum.StrEnum):
    """A session's lifecycle status, chosen by the client."""

    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"

    @classmethod
    def parse(cls, value: SessionStatus | str) -> SessionStatus:
        """A status from itself or its name in any case (`"completed"`, `"COMPLETED"`)."""
        try:
            return cls(str(value).lower())
        except ValueError:
            names = ", ".join(status.value for status in cls)
            raise ValueError(f"unknown session status {value!r}; one of {names}") from None

    def to_proto(self) -> session_pb2.SessionStatus:
        return cast(session_pb2.SessionStatus, getattr(session_pb2, f"SESSION_STATUS_{self.name}"))

    @classmethod
    def from_proto(cls, value: int) -> SessionStatus | None:
        name = session_pb2.SessionStatus.Name(value).removeprefix("SESSION_STATUS_")
        return None if name == "UNSPECIFIED" else cls[name]


class SessionView(enum.StrEnum):
    """How much of a session a read returns: `basic` leaves out the state; `scoped` adds the
    states of its app and of its user (GetSession only)."""

    BASIC = "basic"
    FULL = "full"
    SCOPED = "scoped"

    def to_proto(self) -> session_pb2.SessionView:
        if self is SessionView.SCOPED:
            return session_pb2.SESSION_VIEW_WITH_SCOPED_STATE
        return cast(session_pb2.SessionView, getattr(session_pb2, f"SESSION_VIEW_{self.name}"))


def _time(message: Any, name: str) -> datetime | None:
    return time_from_timestamp(getattr(message, name)) if message.HasField(name) else None


@dataclass(frozen=True, slots=True)
class Session:
    """A session: an agent's conversation or run, with its state and event log position, and
    its summary: `preview` (its first user message) and `last_event_time`."""

    id: str
    app_name: str
    user_id: str = ""
    agent_id: str = ""
    status: SessionStatus | None = SessionStatus.ACTIVE
    metadata: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    version: int = 0
    last_seq: int = 0
    event_count: int = 0
    create_time: datetime | None = None
    update_time: datetime | None = None
    expire_time: datetime | None = None
    delete_time: datetime | None = None
    preview: str = ""
    last_event_time: datetime | None = None
    app_state: dict[str, Any] | None = None
    user_state: dict[str, Any] | None = None

    @classmethod
    def from_proto(cls, message: session_pb2.Session) -> Session:
        return cls(
            id=message.id,
            app_name=message.app_name,
            user_id=message.user_id,
            agent_id=message.agent_id,
            status=SessionStatus.from_proto(message.status),
            metadata=dict_from_struct(message.metadata),
            state=dict_from_struct(message.state),
            version=message.version,
            last_seq=message.last_seq,
            event_count=message.event_count,
            create_time=_time(message, "create_time"),
            update_time=_time(message, "update_time"),
            expire_time=_time(message, "expire_time"),
            delete_time=_time(message, "delete_time"),
            preview=message.preview,
            last_event_time=_time(message, "last_event_time"),
            app_state=(
                dict_from_struct(message.app_state) if message.HasField("app_state") else None
            ),
            user_state=(
                dict_from_struct(message.user_state) if message.HasField("user_state") else None
            ),
        )


@dataclass(frozen=True, slots=True)
class Content:
    """The human-readable content of an event."""

    role: str = ""
    text: str = ""


@dataclass(frozen=True, slots=True)
class EventActions:
    """What an event does besides being recorded: `state_delta` is merged into its session's
    state, `app_state_delta` into its app's, `user_state_delta` into its user's, all in the
    append's transaction (a None value removes its key)."""

    state_delta: dict[str, Any] = field(default_factory=dict)
    app_state_delta: dict[str, Any] = field(default_factory=dict)
    user_state_delta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_proto(cls, message: event_pb2.EventActions) -> EventActions:
        return cls(
            dict_from_struct(message.state_delta),
            dict_from_struct(message.app_state_delta),
            dict_from_struct(message.user_state_delta),
        )

    def fill(self, message: event_pb2.EventActions) -> None:
        for name in ("state_delta", "app_state_delta", "user_state_delta"):
            delta = getattr(self, name)
            if delta:
                getattr(message, name).CopyFrom(struct_from_dict(delta))
        message.SetInParent()


@dataclass(frozen=True, slots=True)
class ScopedState:
    """The state of an app (empty `user_id`) or of one user of an app, shared by their
    sessions; `version` 0 when nothing was ever set."""

    app_name: str
    user_id: str
    state: dict[str, Any]
    version: int
    update_time: datetime | None

    @classmethod
    def from_proto(cls, message: session_pb2.ScopedState) -> ScopedState:
        return cls(
            app_name=message.app_name,
            user_id=message.user_id,
            state=dict_from_struct(message.state),
            version=message.version,
            update_time=_time(message, "update_time"),
        )


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of a session's log. To append, give at least `type`; the server sets
    `session_id`, `seq`, `position` and `create_time`, the client `event_id` if left empty."""

    type: str
    event_id: str = ""
    session_id: str = ""
    seq: int = 0
    position: int = 0
    author: str = ""
    invocation_id: str = ""
    agent_id: str = ""
    branch: str = ""
    content: Content | None = None
    data: dict[str, Any] | None = None
    actions: EventActions | None = None
    metadata: dict[str, Any] | None = None
    create_time: datetime | None = None
    resume_token: str = ""

    def typed_data(self) -> EventData | dict[str, Any]:
        """`data` as its type's model for the well-known types (`LLMStreamData` for an
        `llm_stream` event, ...), as a dict for any other type."""
        data = self.data or {}
        model = WELL_KNOWN_TYPES.get(self.type)
        return model.model_validate(data) if model is not None else data

    @classmethod
    def from_proto(cls, message: event_pb2.Event) -> Event:
        return cls(
            type=message.type,
            event_id=message.event_id,
            session_id=message.session_id,
            seq=message.seq,
            position=message.position,
            author=message.author,
            invocation_id=message.invocation_id,
            agent_id=message.agent_id,
            branch=message.branch,
            content=(
                Content(message.content.role, message.content.text)
                if message.HasField("content")
                else None
            ),
            data=dict_from_struct(message.data) if message.HasField("data") else None,
            actions=(
                EventActions.from_proto(message.actions) if message.HasField("actions") else None
            ),
            metadata=dict_from_struct(message.metadata) if message.HasField("metadata") else None,
            create_time=_time(message, "create_time"),
            resume_token=message.resume_token,
        )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Event:
        """An event from a dict with the proto's field names (`content` and `actions` as
        dicts too, `create_time` a datetime or RFC 3339 text). Raises `TypeError` naming an
        unknown field."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise TypeError(f"unknown event field(s): {', '.join(unknown)}")
        fields = dict(values)
        if isinstance(fields.get("create_time"), str):  # RFC 3339, as agentstore.client.plain
            fields["create_time"] = datetime.fromisoformat(fields["create_time"])
        if isinstance(fields.get("content"), Mapping):
            fields["content"] = Content(**fields["content"])
        if isinstance(fields.get("actions"), Mapping):
            fields["actions"] = EventActions(**fields["actions"])
        return cls(**fields)


def event_to_proto(event: Event | Mapping[str, Any], *, keep_time: bool = False) -> event_pb2.Event:
    """The proto of an event to append (an `Event` or a dict with the proto's field names).
    What the server sets (`seq`, `position`, `session_id`) is left out, and `create_time`
    unless `keep_time` (an import)."""
    if not isinstance(event, Event):
        event = Event.from_dict(event)
    message = event_pb2.Event(
        event_id=event.event_id,
        type=event.type,
        author=event.author,
        invocation_id=event.invocation_id,
        agent_id=event.agent_id,
        branch=event.branch,
    )
    if event.content is not None:
        message.content.role = event.content.role
        message.content.text = event.content.text
    if event.data is not None:
        message.data.CopyFrom(struct_from_dict(event.data))
    if event.actions is not None:
        event.actions.fill(message.actions)
    if event.metadata is not None:
        message.metadata.CopyFrom(struct_from_dict(event.metadata))
    if keep_time and event.create_time is not None:
        message.create_time.CopyFrom(timestamp_from_time(event.create_time))
    return message


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What one append did: how many events were new, how many the session held already
    (duplicates, by `event_id`), the seq of each event in order, and the session's `last_seq`
    and `version` after it."""

    appended: int
    duplicates: int
    seqs: tuple[int, ...]
    last_seq: int
    version: int


@dataclass(frozen=True, slots=True)
class RemovalResult:
    """What `remove_events` took back: the removed seqs as (first, last) ranges and their
    count, the removed event (for `newest`), the seq of the `events_removed` notice (0 when
    nothing was removed), and the session's last_seq and version after it."""

    ranges: tuple[tuple[int, int], ...]
    count: int
    removed: Event | None
    notice_seq: int
    last_seq: int
    version: int

    @classmethod
    def from_proto(cls, message: session_service_pb2.RemoveEventsResponse) -> RemovalResult:
        return cls(
            ranges=tuple((r.first, r.last) for r in message.removed_ranges),
            count=message.removed_count,
            removed=Event.from_proto(message.removed[0]) if message.removed else None,
            notice_seq=message.notice_seq,
            last_seq=message.last_seq,
            version=message.version,
        )


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A search match: the event, its relevance score (higher is better, comparable within one
    query) and a snippet with the matches between `<b>` and `</b>`."""

    event: Event
    score: float
    snippet: str

    @classmethod
    def from_proto(cls, message: session_service_pb2.SearchHit) -> SearchHit:
        return cls(Event.from_proto(message.event), message.score, message.snippet)


@dataclass(frozen=True, slots=True)
class SessionStats:
    """Counts kept by every append of a session."""

    event_count: int
    events_by_type: dict[str, int]
    events_by_author: dict[str, int]
    events_by_role: dict[str, int]
    text_chars: int
    first_event_time: datetime | None
    last_event_time: datetime | None

    @classmethod
    def from_proto(cls, message: session_service_pb2.SessionStats) -> SessionStats:
        return cls(
            event_count=message.event_count,
            events_by_type=dict(message.events_by_type),
            events_by_author=dict(message.events_by_author),
            events_by_role=dict(message.events_by_role),
            text_chars=message.text_chars,
            first_event_time=_time(message, "first_event_time"),
            last_event_time=_time(message, "last_event_time"),
        )


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Counts over the whole store, or one app."""

    total_sessions: int
    active_sessions: int
    deleted_sessions: int
    expired_sessions: int
    total_events: int
    average_events_per_session: float
    active_sessions_by_status: dict[str, int]

    @classmethod
    def from_proto(cls, message: session_service_pb2.StoreStats) -> StoreStats:
        return cls(
            total_sessions=message.total_sessions,
            active_sessions=message.active_sessions,
            deleted_sessions=message.deleted_sessions,
            expired_sessions=message.expired_sessions,
            total_events=message.total_events,
            average_events_per_session=message.average_events_per_session,
            active_sessions_by_status=dict(message.active_sessions_by_status),
        )
