"""Events as bytes on the wire, made once.

An appended event keeps the encoding of its own fields but its content (mapping.kept_encoding,
stored as events.encoded). A read sends those bytes as they are, with the content (kept once,
in its columns) and the fields the store set (event_id, session_id, seq, position,
create_time) and a feed's resume token encoded after them (`event_entries`): the protobuf
wire format reads a field wherever it comes, so the concatenation is the whole Event.
Rebuilding each event's Structs from its JSON columns, then encoding them, was most of the
time of loading a session's history. Events without a kept encoding (the server's removal
notices, events appended before it was kept) are built from their columns by `fill_event`,
the one mapping; a test checks both give the same messages.

The entries are elements of a repeated `events` field: field 1 of both StreamEventsResponse
and ListEventsResponse, so a response is its entries followed by its other fields."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from agentstore.api.mapping import epoch_parts, fill_event
from agentstore.api.response_budget import RESPONSE_BUDGET_BYTES, entries_within_budget
from agentstore.domain.events import Event
from agentstore.service.paging import Page
from agentstore.service.replays import EncodedEvent
from agentstore.v1 import event_pb2, session_service_pb2

__all__ = ["encode_event_page", "event_entries"]

# The number of `events` in the responses that carry entries; checked at import below.
_EVENTS_FIELD = 1
for _response in (session_service_pb2.StreamEventsResponse, session_service_pb2.ListEventsResponse):
    assert _response.DESCRIPTOR.fields_by_name["events"].number == _EVENTS_FIELD

_NUMBERS = {field.name: field.number for field in event_pb2.Event.DESCRIPTOR.fields}
_LENGTH_DELIMITED, _VARINT = 2, 0
_EVENT_ID_TAG = bytes([_NUMBERS["event_id"] << 3 | _LENGTH_DELIMITED])
_SESSION_ID_TAG = bytes([_NUMBERS["session_id"] << 3 | _LENGTH_DELIMITED])
_SEQ_TAG = bytes([_NUMBERS["seq"] << 3 | _VARINT])
_POSITION_TAG = bytes([_NUMBERS["position"] << 3 | _VARINT])
_CREATE_TIME_TAG = bytes([_NUMBERS["create_time"] << 3 | _LENGTH_DELIMITED])
_RESUME_TOKEN_TAG = bytes([_NUMBERS["resume_token"] << 3 | _LENGTH_DELIMITED])
_CONTENT_TAG = bytes([_NUMBERS["content"] << 3 | _LENGTH_DELIMITED])
_ROLE_TAG, _TEXT_TAG = b"\x0a", b"\x12"  # Content's fields 1 and 2, both strings
_SECONDS_TAG, _NANOS_TAG = b"\x08", b"\x10"  # google.protobuf.Timestamp's fields 1 and 2
_ENTRY_TAG = bytes([_EVENTS_FIELD << 3 | _LENGTH_DELIMITED])
_UINT64 = (1 << 64) - 1


def event_entries(events: Sequence[Event], tokens: Sequence[str] = ()) -> list[bytes]:
    """Each event as an element of a response's `events`: its tag, its length and its
    encoding, with the resume token of the same place in `tokens`, if any. Per event only
    what differs is encoded: a session's events share their session, and events appended
    together their time."""
    entries: list[bytes] = []
    append = entries.append
    session_id, session_field = "", b""
    create_time: datetime | None = None
    time_field = b""
    for index, event in enumerate(events):
        token = tokens[index] if index < len(tokens) else ""
        encoded = event.encoded
        if encoded is None:
            message = fill_event(event_pb2.Event(), event)
            if token:
                message.resume_token = token
            body = message.SerializeToString()
        else:
            if event.session_id != session_id:
                session_id = event.session_id
                session_field = _string_field(_SESSION_ID_TAG, session_id)
            if event.create_time != create_time:
                create_time = event.create_time
                time_field = _timestamp_field(create_time)
            body = b"".join(
                (
                    encoded,
                    _content_field(event.content_role, event.content_text),
                    _string_field(_EVENT_ID_TAG, event.event_id),
                    session_field,
                    _SEQ_TAG,
                    _varint(event.seq),
                    _POSITION_TAG,
                    _varint(event.position),
                    time_field,
                    _string_field(_RESUME_TOKEN_TAG, token),
                )
            )
        append(_ENTRY_TAG + _varint(len(body)) + body)
    return entries


def encode_event_page(page: Page[EncodedEvent], budget: int = RESPONSE_BUDGET_BYTES) -> bytes:
    """A ListEventsResponse of the page's events, cut to those within `budget` with the
    token going on after the last of them (see response_budget.py)."""
    entries = [event.entry for event in page.items]
    count = entries_within_budget(entries, budget)
    token = (
        page.next_page_token if count == len(entries) else page.token_after(page.items[count - 1])
    )
    rest = session_service_pb2.ListEventsResponse(next_page_token=token)
    return b"".join(entries[:count]) + rest.SerializeToString()


def _timestamp_field(value: datetime) -> bytes:
    seconds, nanos = epoch_parts(value)
    timestamp = b"".join(
        (
            _SECONDS_TAG + _varint(seconds) if seconds else b"",
            _NANOS_TAG + _varint(nanos) if nanos else b"",
        )
    )
    return _CREATE_TIME_TAG + _varint(len(timestamp)) + timestamp


def _content_field(role: str, text: str) -> bytes:
    # Set when either is, as fill_event does.
    if not (role or text):
        return b""
    content = _string_field(_ROLE_TAG, role) + _string_field(_TEXT_TAG, text)
    return _CONTENT_TAG + _varint(len(content)) + content


def _string_field(tag: bytes, value: str) -> bytes:
    if not value:
        return b""
    encoded = value.encode()
    return tag + _varint(len(encoded)) + encoded


def _varint(value: int) -> bytes:
    if 0 <= value < _SMALL_LIMIT:
        return _SMALL[value]
    value &= _UINT64  # a negative int64 is its two's complement, ten bytes
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Every varint of one or two bytes, made once (about 0.6 MB): seqs, the lengths of events,
# a young store's positions. Looking one up is a tenth of encoding it here.
_SMALL_LIMIT = 1 << 14
_SMALL = [bytes([n]) for n in range(0x80)] + [
    bytes(((n & 0x7F) | 0x80, n >> 7)) for n in range(0x80, _SMALL_LIMIT)
]
