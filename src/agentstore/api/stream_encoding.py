"""StreamEvents responses, made once for all the followers that receive the same ones."""

from __future__ import annotations

import operator
from collections import OrderedDict
from typing import Any, Generic, TypeVar

from agentstore.api.mapping import event_to_proto, fill_event
from agentstore.domain.events import Event
from agentstore.service.streams import StreamMessage
from agentstore.v1 import event_pb2, session_service_pb2

__all__ = ["StreamEncoder"]

KeyT = TypeVar("KeyT")
OwnerT = TypeVar("OwnerT")
ValueT = TypeVar("ValueT")


class StreamEncoder:
    """Encodes StreamEvents responses, remembering recent live work. The followers of a
    session or feed on this replica are handed the same live event objects, usually in the
    same messages: each such event is converted, and each such message built, once for all
    of them (per follower it cost a replica more CPU than sending). Cached responses are
    shared, so never modified. Replay pages belong to one follower and are not kept."""

    def __init__(self, max_entries: int = 4096, max_bytes: int = 8 * 1024 * 1024) -> None:
        # Keyed by id(); each entry holds the objects whose ids make its key, so that the
        # ids cannot be reused while it is kept, and a hit is checked by identity.
        self._events: _Recent[int, Event, event_pb2.Event] = _Recent(max_entries, max_bytes)
        self._responses: _Recent[
            tuple[Any, ...], list[Event], session_service_pb2.StreamEventsResponse
        ] = _Recent(max_entries, max_bytes)

    def encode(self, message: StreamMessage) -> session_service_pb2.StreamEventsResponse:
        if not message.live:
            response = _empty_response(message)
            for event in message.events:
                fill_event(response.events.add(), event)
            _set_tokens(response, message.tokens)
            return response
        key = (
            tuple(map(id, message.events)), tuple(message.tokens), message.resume_token,
            message.caught_up, message.heartbeat,
        )  # fmt: skip
        cached = self._responses.get(key)
        if cached is not None and all(map(operator.is_, cached[0], message.events)):
            return cached[1]
        response = _empty_response(message)
        response.events.extend(self._event(event) for event in message.events)
        _set_tokens(response, message.tokens)
        self._responses.put(key, message.events, response, response.ByteSize())
        return response

    def _event(self, event: Event) -> event_pb2.Event:
        cached = self._events.get(id(event))
        if cached is not None and cached[0] is event:
            return cached[1]
        converted = event_to_proto(event)
        self._events.put(id(event), event, converted, converted.ByteSize())
        return converted


class _Recent(Generic[KeyT, OwnerT, ValueT]):
    """The most recently added entries, within a count and a size in bytes: key -> (owner,
    value). What alone passes the size is not kept."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._entries: OrderedDict[KeyT, tuple[OwnerT, ValueT, int]] = OrderedDict()
        self._bytes = 0

    def get(self, key: KeyT) -> tuple[OwnerT, ValueT] | None:
        entry = self._entries.get(key)
        return None if entry is None else (entry[0], entry[1])

    def put(self, key: KeyT, owner: OwnerT, value: ValueT, size: int) -> None:
        if size > self._max_bytes:
            return
        if (replaced := self._entries.pop(key, None)) is not None:
            self._bytes -= replaced[2]
        self._entries[key] = (owner, value, size)
        self._bytes += size
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            self._bytes -= self._entries.popitem(last=False)[1][2]


def _empty_response(message: StreamMessage) -> session_service_pb2.StreamEventsResponse:
    return session_service_pb2.StreamEventsResponse(
        caught_up=message.caught_up,
        heartbeat=message.heartbeat,
        resume_token=message.resume_token,
    )


def _set_tokens(response: session_service_pb2.StreamEventsResponse, tokens: list[str]) -> None:
    for event_message, token in zip(response.events, tokens, strict=False):
        event_message.resume_token = token
