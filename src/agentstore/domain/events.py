"""Events: what an append carries, what the store holds, and the rules on them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
)

from agentstore.domain.sessions import (
    Identifier,
    KeptTime,
    OptionalIdentifier,
    encode_json_object,
)

__all__ = [
    "FEED_START",
    "MAX_LABEL_LENGTH",
    "NO_NUL",
    "AppendMessage",
    "AppendOutcome",
    "Event",
    "EventFilter",
    "FeedPosition",
    "FeedScope",
    "JsonDocument",
    "Label",
    "NewContent",
    "NewEvent",
    "Removal",
    "RemovalOutcome",
    "SessionStats",
    "Text",
]


# Checked by pydantic's core, not by Python code: these run for every field of every event.
NO_NUL = r"^[^\x00]*$"
MAX_LABEL_LENGTH = 256
# A short free-form string (type, author, branch, role): any character but NUL.
Label = Annotated[str, StringConstraints(max_length=MAX_LABEL_LENGTH, pattern=NO_NUL)]
RequiredLabel = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_LABEL_LENGTH, pattern=NO_NUL)
]
# Free text, stored byte for byte; PostgreSQL cannot store NUL, so it is refused.
Text = Annotated[str, StringConstraints(pattern=NO_NUL)]


@dataclass(frozen=True, slots=True)
class JsonDocument:
    """A JSON object and its compact encoding, made once at validation and written as is."""

    value: dict[str, Any]
    encoded: str


def _to_document(value: Any) -> JsonDocument:
    if isinstance(value, JsonDocument):
        return value
    return JsonDocument(value, encode_json_object(value))


# A JSON object of an event; the event's size limit bounds it.
Document = Annotated[JsonDocument, PlainValidator(_to_document)]


class _Input(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NewContent(_Input):
    role: Label = ""
    text: Text = ""


class NewActions(_Input):
    """Deltas merged into the session's state, its app's and its user's (see
    event.proto's EventActions)."""

    state_delta: Document | None = None
    app_state_delta: Document | None = None
    user_state_delta: Document | None = None


class NewEvent(_Input):
    """One event of an append. `size_bytes` is its encoded size, checked against the limit."""

    event_id: OptionalIdentifier = ""
    type: RequiredLabel
    author: Label = ""
    invocation_id: Label = ""
    agent_id: OptionalIdentifier = ""
    branch: Label = ""
    content: NewContent | None = None
    data: Document | None = None
    actions: NewActions | None = None
    metadata: Document | None = None
    # Kept instead of the commit's time (an import); only an admin may set it.
    create_time: KeptTime | None = None
    size_bytes: int = 0
    # The event's own fields as the API encoded them, kept with it for reads to send as they
    # are (events.encoded in schema.sql). Opaque here; None keeps nothing.
    encoded: bytes | None = None


class AppendMessage(_Input):
    """One request message of AppendEvents: all of it is written, or none."""

    session_id: Identifier
    events: list[NewEvent]
    expected_last_seq: int | None = Field(default=None, ge=0)
    # The request message's encoded size, checked against the limit before validation.
    size_bytes: int = 0


@dataclass(frozen=True, slots=True)
class AppendOutcome:
    """What one committed message did."""

    session_id: str
    app_name: str
    appended: int
    duplicates: int
    last_seq: int
    version: int
    # The seq of each event of the message, in order; a duplicate's is the one stored before.
    seqs: list[int]


class Event(NamedTuple):
    """A stored event. A named tuple rather than a frozen dataclass: replay builds one per
    row, and a frozen dataclass took twice as long to construct."""

    session_id: str
    seq: int
    event_id: str
    position: int
    type: str
    author: str
    invocation_id: str
    agent_id: str
    branch: str
    content_role: str
    content_text: str
    data: dict[str, Any] | None
    # The deltas it carried, by name: state_delta, app_state_delta, user_state_delta.
    actions: dict[str, Any] | None
    metadata: dict[str, Any] | None
    create_time: datetime
    # The encoding kept from its append (NewEvent.encoded). Where a read has it, it leaves
    # data, actions and metadata out (None): decoding them was most of the read's cost, and
    # `encoded` holds them. Reads that need them (search, removal) return full events.
    encoded: bytes | None = None


class EventFilter(_Input):
    """Which of a session's events ListEvents returns; empty values match everything."""

    session_id: Identifier
    after_seq: int = Field(default=0, ge=0)
    before_seq: int = Field(default=0, ge=0)
    types: list[RequiredLabel] = Field(default_factory=list)
    author: Label = ""
    agent_id: OptionalIdentifier = ""
    invocation_id: Label = ""
    branch: Label = ""
    start_time: datetime | None = None
    end_time: datetime | None = None
    descending: bool = False


# Where a feed across sessions stands: (transaction id, position) of the last event seen.
FeedPosition = tuple[int, int]
FEED_START: FeedPosition = (0, 0)


@dataclass(frozen=True, slots=True)
class FeedScope:
    """Which events a feed across sessions carries: an app's, maybe one user's or agent's."""

    app_name: str
    user_id: str = ""
    agent_id: str = ""


@dataclass(frozen=True, slots=True)
class SessionStats:
    event_count: int
    events_by_type: dict[str, int]
    events_by_author: dict[str, int]
    events_by_role: dict[str, int]
    text_chars: int
    first_event_time: datetime | None
    last_event_time: datetime | None


class Removal(_Input):
    """What RemoveEvents takes back: the newest event, seqs `first` to `last`, everything from
    `invocation_id` on, or all (see session_service.proto)."""

    session_id: Identifier
    mode: Literal["newest", "seqs", "invocation", "all"]
    first: int = Field(default=0, ge=0)
    last: int = Field(default=0, ge=0)
    invocation_id: Label = ""
    expected_last_seq: int | None = Field(default=None, ge=0)


@dataclass(frozen=True, slots=True)
class HistoryRead:
    """A session's events after a seq, with its removed_count and last_seq, as read in one
    snapshot."""

    events: list[Event]
    removed_count: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class RemovalOutcome:
    """What RemoveEvents did: the removed seqs as (first, last) ranges and their count, the
    removed event for a removal of the newest, the notice's seq (0 when nothing was removed),
    and the session's last_seq and version after it."""

    app_name: str
    ranges: list[tuple[int, int]]
    count: int
    removed: Event | None
    notice_seq: int
    last_seq: int
    version: int
