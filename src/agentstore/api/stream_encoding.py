"""StreamEvents responses, made once for all the followers that receive the same ones."""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from agentstore.api.mapping import event_to_proto, fill_event
from agentstore.api.response_budget import RESPONSE_BUDGET_BYTES, fill_within_budget
from agentstore.domain.events import Event
from agentstore.service.streams import StreamMessage
from agentstore.v1 import event_pb2, session_service_pb2

__all__ = ["StreamEncoder"]

KeyT = TypeVar("KeyT")
OwnerT = TypeVar("OwnerT")
ValueT = TypeVar("ValueT")
Response = session_service_pb2.StreamEventsResponse


class StreamEncoder:
    """Encodes StreamEvents responses, remembering recent live work. The followers of a
    session or feed on this replica are handed the same live event objects, usually in the
    same messages: each such event is converted, and each such message built, once for all
    of them (per follower it cost a replica more CPU than sending). Cached responses are
    shared, so never modified. Replay pages belong to one follower and are not kept.

    Responses come encoded, sent as they are (api/decoding.py): a live response is encoded
    once for every follower. A message whose events would pass the response budget
    (api/response_budget.py) becomes several responses, each within it; a feed's responses
    each carry the resume token of their last event, and only the last one the message's
    markers."""

    def __init__(
        self,
        max_entries: int = 4096,
        max_bytes: int = 8 * 1024 * 1024,
        budget: int = RESPONSE_BUDGET_BYTES,
    ) -> None:
        # Keyed by id(); each entry holds the objects whose ids make its key, so that the
        # ids cannot be reused while it is kept, and a hit is checked by identity.
        self._events: _Recent[int, Event, event_pb2.Event] = _Recent(max_entries, max_bytes)
        self._responses: _Recent[tuple[Any, ...], list[Event], list[bytes]] = _Recent(
            max_entries, max_bytes
        )
        self._budget = budget

    def encode(self, message: StreamMessage) -> list[bytes]:
        """The message as encoded responses: one, unless its events pass the budget."""
        if not message.live:
            return self._encode(message, fill_event)
        key = (
            tuple(map(id, message.events)), tuple(message.tokens), message.resume_token,
            message.caught_up, message.heartbeat,
        )  # fmt: skip
        cached = self._responses.get(key)
        if cached is not None and all(map(operator.is_, cached[0], message.events)):
            return cached[1]
        encoded = self._encode(message, self._copy_event)
        self._responses.put(key, message.events, encoded, sum(map(len, encoded)))
        return encoded

    def _encode(
        self, message: StreamMessage, fill: Callable[[event_pb2.Event, Event], object]
    ) -> list[bytes]:
        # Usually the whole message fits: encoded once, measured by its length.
        response = Response(
            caught_up=message.caught_up,
            heartbeat=message.heartbeat,
            resume_token=message.resume_token,
        )
        for event in message.events:
            fill(response.events.add(), event)
        for event_message, token in zip(response.events, message.tokens, strict=False):
            event_message.resume_token = token
        whole = response.SerializeToString()
        if len(whole) <= self._budget:
            return [whole]
        return [part.SerializeToString() for part in self._split(message, fill)]

    def _split(
        self, message: StreamMessage, fill: Callable[[event_pb2.Event, Event], object]
    ) -> list[Response]:
        responses: list[Response] = []
        done = 0
        while True:
            response = Response()
            added = fill_within_budget(response.events, message.events[done:], fill, self._budget)
            tokens = message.tokens[done : done + added]
            for event_message, token in zip(response.events, tokens, strict=False):
                event_message.resume_token = token
            done += added
            responses.append(response)
            if done >= len(message.events):
                response.caught_up = message.caught_up
                response.heartbeat = message.heartbeat
                response.resume_token = message.resume_token
                return responses
            response.resume_token = tokens[-1] if tokens else ""

    def _copy_event(self, target: event_pb2.Event, event: Event) -> None:
        target.CopyFrom(self._event(event))

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
