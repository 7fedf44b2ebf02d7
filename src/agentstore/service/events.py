"""Event use cases: validated, batched appends; paged history; per-session stats."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import ValidationError

from agentstore.domain.callers import Caller
from agentstore.domain.errors import DomainError, FieldViolation, InvalidArgument, LimitExceeded
from agentstore.domain.event_data import WELL_KNOWN_TYPES
from agentstore.domain.events import AppendMessage, Event, EventFilter, SessionStats
from agentstore.domain.ids import new_uuid7
from agentstore.domain.limits import Limits
from agentstore.service.paging import (
    MAX_INT64,
    Page,
    PageSize,
    decode_page_token,
    encode_page_token,
    page_size,
)
from agentstore.service.requests import AppendFields, EventListFields
from agentstore.service.validation import field_path, validate, validate_identifier
from agentstore.store.events import EventRepository

__all__ = ["AppendTotals", "EventService"]

# A request message as the transport delivers it; `decode` turns it into plain fields.
RequestT = TypeVar("RequestT")

LIST_PAGE = PageSize(default=100, maximum=1000)
# How much one transaction may take from a stream; what arrives meanwhile waits for the next.
BATCH_EVENTS = 2000
BATCH_BYTES = 8 * 1024 * 1024
# What a stream may read ahead of its writer: bounds memory per stream and pushes back on a
# client that sends faster than its messages commit.
READ_AHEAD_MESSAGES = 256
READ_AHEAD_BYTES = 32 * 1024 * 1024


@dataclass
class AppendTotals:
    appended: int = 0
    duplicates: int = 0
    last_seq: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Validated:
    message: AppendMessage
    size_bytes: int
    index: int


@dataclass(frozen=True)
class _Stopped:
    """The end of the request stream, or the error that ended reading it."""

    error: BaseException | None


class EventService:
    def __init__(
        self,
        repository: EventRepository,
        limits: Limits,
        on_commit: Callable[[list[tuple[str, str]]], None] = lambda appended: None,
    ) -> None:
        self._repository = repository
        self._limits = limits
        # Told the (app_name, session_id) of every committed append: live followers wait.
        self._on_commit = on_commit

    async def append_stream(
        self,
        caller: Caller,
        requests: AsyncIterator[RequestT],
        decode: Callable[[RequestT], AppendFields],
    ) -> AppendTotals:
        """Append every request message of a stream, each all-or-nothing and committed while
        the stream goes on. Messages that arrive while a commit is in flight are committed
        together in the next transaction. On the first failing message, everything before it
        stays committed and its error is raised (with `message_index` in its metadata)."""
        queue: asyncio.Queue[_Validated | _Stopped] = asyncio.Queue(READ_AHEAD_MESSAGES)
        budget = _ByteBudget(READ_AHEAD_BYTES)
        reader = asyncio.create_task(self._read(requests, decode, queue, budget))
        totals = AppendTotals()
        try:
            while True:
                batch, stopped = await _next_batch(queue)
                await budget.release(sum(item.size_bytes for item in batch))
                if batch:
                    result = await self._repository.append(
                        caller.scope, [item.message for item in batch]
                    )
                    for outcome in result.outcomes:
                        totals.appended += outcome.appended
                        totals.duplicates += outcome.duplicates
                        totals.last_seq[outcome.session_id] = outcome.last_seq
                    appended = {(o.app_name, o.session_id) for o in result.outcomes if o.appended}
                    if appended:
                        self._on_commit(sorted(appended))
                    if result.failure is not None:
                        failed = batch[len(result.outcomes)]
                        result.failure.metadata["message_index"] = str(failed.index)
                        raise result.failure
                if stopped is not None:
                    if stopped.error is not None:
                        raise stopped.error
                    return totals
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _read(
        self,
        requests: AsyncIterator[RequestT],
        decode: Callable[[RequestT], AppendFields],
        queue: asyncio.Queue[_Validated | _Stopped],
        budget: _ByteBudget,
    ) -> None:
        index = 0
        try:
            async for request in requests:
                validated = self._validate_message(decode(request), index)
                await budget.take(validated.size_bytes)
                await queue.put(validated)
                index += 1
        except DomainError as exc:
            exc.metadata["message_index"] = str(index)
            await queue.put(_Stopped(exc))
        except Exception as exc:
            await queue.put(_Stopped(exc))
        else:
            await queue.put(_Stopped(None))

    def _validate_message(self, request: AppendFields, index: int) -> _Validated:
        limits = self._limits
        size = request["size_bytes"]
        if size > limits.max_message_bytes:
            raise LimitExceeded(
                "events", f"the message is {size} bytes; the limit is {limits.max_message_bytes}",
                reason="MESSAGE_TOO_LARGE", limit=limits.max_message_bytes,
            )  # fmt: skip
        events = request["events"]
        if len(events) > limits.max_events_per_message:
            raise LimitExceeded(
                "events",
                f"{len(events)} events in one message; the limit is "
                f"{limits.max_events_per_message}",
                reason="TOO_MANY_EVENTS", limit=limits.max_events_per_message,
            )  # fmt: skip
        for position, event in enumerate(events):
            if event["size_bytes"] > limits.max_event_bytes:
                raise LimitExceeded(
                    f"events[{position}]",
                    f"the event is {event['size_bytes']} bytes; the limit is "
                    f"{limits.max_event_bytes}",
                    reason="EVENT_TOO_LARGE", limit=limits.max_event_bytes,
                )  # fmt: skip
            if not event["event_id"]:
                event["event_id"] = new_uuid7()
        message = validate(AppendMessage, request, limits)
        _check_typed_data(message)
        return _Validated(message, size, index)

    async def list(
        self,
        caller: Caller,
        request: EventListFields,
        *,
        page_size_requested: int,
        page_token: str,
    ) -> Page[Event]:
        event_filter = validate(EventFilter, request, self._limits)
        limit = page_size(page_size_requested, LIST_PAGE)
        filters = event_filter.model_dump(mode="json")
        position = decode_page_token(page_token, filters)
        after = None
        if position is not None:
            if len(position) != 1 or type(position[0]) is not int:
                raise InvalidArgument.of("page_token", "is malformed")
            if not 0 <= position[0] <= MAX_INT64:
                raise InvalidArgument.of("page_token", "is malformed")
            after = position[0]
        events = await self._repository.list_events(
            caller.scope, event_filter, after=after, limit=limit + 1
        )

        def token_after(event: Event) -> str:
            return encode_page_token([event.seq], filters)

        return Page.of(events, limit, token_after)

    async def stats(self, caller: Caller, session_id: str) -> SessionStats:
        validate_identifier("session_id", session_id, self._limits)
        return await self._repository.session_stats(caller.scope, session_id)


class _ByteBudget:
    """Bytes of messages read but not yet taken by the writer, held under a limit. One message
    larger than the limit still passes alone."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._held = 0
        self._changed = asyncio.Condition()

    def _fits(self, size: int) -> bool:
        return self._held == 0 or self._held + size <= self._limit

    async def take(self, size: int) -> None:
        # Usually there is room: no lock then (one event loop, nothing runs in between),
        # since this runs for every message of every stream.
        if not self._fits(size):
            async with self._changed:
                await self._changed.wait_for(lambda: self._fits(size))
        self._held += size

    async def release(self, size: int) -> None:
        if size:
            self._held -= size
            async with self._changed:
                self._changed.notify_all()


async def _next_batch(
    queue: asyncio.Queue[_Validated | _Stopped],
) -> tuple[list[_Validated], _Stopped | None]:
    """What has arrived: at least one item (waiting for it), then whatever is already queued,
    up to the batch limits."""
    batch: list[_Validated] = []
    events = size = 0
    item = await queue.get()
    while True:
        if isinstance(item, _Stopped):
            return batch, item
        batch.append(item)
        events += len(item.message.events)
        size += item.size_bytes
        if events >= BATCH_EVENTS or size >= BATCH_BYTES or queue.empty():
            return batch, None
        item = queue.get_nowait()


def _check_typed_data(message: AppendMessage) -> None:
    """Validate `data` of well-known event types against their models."""
    violations: list[FieldViolation] = []
    for position, event in enumerate(message.events):
        model = WELL_KNOWN_TYPES.get(event.type)
        if model is None:
            continue
        try:
            model.model_validate(event.data.value if event.data is not None else {})
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                path = field_path((f"events[{position}]", "data", *error["loc"]))
                violations.append(FieldViolation(path, f"{error['msg']} (type {event.type})"))
    if violations:
        raise InvalidArgument(violations)
