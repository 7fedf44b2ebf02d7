"""StreamEvents responses, made once for all the followers that receive the same ones."""

from __future__ import annotations

import operator
from collections import OrderedDict
from typing import Any, Generic, TypeVar

from agentstore.api.event_encoding import event_entries
from agentstore.api.response_budget import RESPONSE_BUDGET_BYTES, entries_within_budget
from agentstore.domain.events import Event
from agentstore.service.streams import StreamMessage
from agentstore.v1 import session_service_pb2

__all__ = ["StreamEncoder"]

KeyT = TypeVar("KeyT")
OwnerT = TypeVar("OwnerT")
ValueT = TypeVar("ValueT")
Response = session_service_pb2.StreamEventsResponse


class StreamEncoder:
    """Encodes StreamEvents responses, remembering recent live work. The followers of a
    session or feed on this replica are handed the same live event objects, usually in the
    same messages: each such event is encoded, and each such message built, once for all of
    them (per follower it cost a replica more CPU than sending). Cached responses are shared,
    so never modified. Replay pages belong to one follower and are not kept.

    Responses are bytes, sent as they are (api/decoding.py): each event's entry
    (api/event_encoding.py), then the response's other fields. A message whose events would
    pass the response budget (api/response_budget.py) becomes several responses, each within
    it; a feed's responses each carry the resume token of their last event, and only the
    last one the message's markers."""

    def __init__(
        self,
        max_entries: int = 4096,
        max_bytes: int = 8 * 1024 * 1024,
        budget: int = RESPONSE_BUDGET_BYTES,
    ) -> None:
        # Keyed by id(); each entry holds the objects whose ids make its key, so that the
        # ids cannot be reused while it is kept, and a hit is checked by identity.
        self._entries: _Recent[tuple[int, str], Event, bytes] = _Recent(max_entries, max_bytes)
        self._responses: _Recent[tuple[Any, ...], list[Event], list[bytes]] = _Recent(
            max_entries, max_bytes
        )
        self._budget = budget

    def encode(self, message: StreamMessage) -> list[bytes]:
        """The message as encoded responses: one, unless its events pass the budget."""
        if not message.live:
            entries = message.entries or event_entries(message.events, message.tokens)
            return self._encode(message, entries)
        key = (
            tuple(map(id, message.events)), tuple(message.tokens), message.resume_token,
            message.caught_up, message.heartbeat,
        )  # fmt: skip
        cached = self._responses.get(key)
        if cached is not None and all(map(operator.is_, cached[0], message.events)):
            return cached[1]
        encoded = self._encode(message, self._live_entries(message))
        self._responses.put(key, message.events, encoded, sum(map(len, encoded)))
        return encoded

    def _encode(self, message: StreamMessage, entries: list[bytes]) -> list[bytes]:
        responses: list[bytes] = []
        done = 0
        while True:
            # Usually all of them fit in one.
            count = entries_within_budget(entries[done:], self._budget)
            part = entries[done : done + count]
            done += count
            if done >= len(entries):
                markers = Response(
                    caught_up=message.caught_up,
                    heartbeat=message.heartbeat,
                    resume_token=message.resume_token,
                )
                responses.append(b"".join(part) + markers.SerializeToString())
                return responses
            resume = Response(resume_token=message.tokens[done - 1] if message.tokens else "")
            responses.append(b"".join(part) + resume.SerializeToString())

    def _live_entries(self, message: StreamMessage) -> list[bytes]:
        entries = []
        for index, event in enumerate(message.events):
            token = message.tokens[index] if index < len(message.tokens) else ""
            cached = self._entries.get((id(event), token))
            if cached is not None and cached[0] is event:
                entries.append(cached[1])
                continue
            (entry,) = event_entries([event], [token])
            self._entries.put((id(event), token), event, entry, len(entry))
            entries.append(entry)
        return entries


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
