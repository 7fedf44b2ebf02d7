"""Append use cases: validated, batched appends from a stream of request messages.

AppendEvents (`append_stream`) and AppendStream (`acknowledged_stream`) share the machinery:
a reader task decodes and validates each request message as it arrives, within a bounded
read-ahead, and the writer takes whatever has arrived, up to a batch's limits, and commits it
as one statement. They differ in what a failing message does: AppendEvents ends the stream
with its error (everything before it stays committed); AppendStream acknowledges it with its
error and goes on."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pydantic import ValidationError

from agentstore.client.event_data import REMOVAL_NOTICE, WELL_KNOWN_TYPES
from agentstore.domain.callers import Caller, Recheck
from agentstore.domain.errors import (
    DomainError,
    FieldViolation,
    InvalidArgument,
    LimitExceeded,
    RateLimited,
    StoreUnavailable,
)
from agentstore.domain.events import AppendMessage, AppendOutcome
from agentstore.domain.ids import new_uuid7
from agentstore.domain.limits import Limits
from agentstore.metrics import METRICS
from agentstore.service.key_limits import KeyLimiter
from agentstore.service.requests import AppendFields
from agentstore.service.validation import field_path, validate
from agentstore.store.events import AppendResult, EventRepository

__all__ = ["AppendAck", "AppendService", "AppendTotals"]

EVENTS_APPENDED = "agentstore_events_appended_total"
COMMITS = "agentstore_append_commits_total"
COMMIT_SECONDS = "agentstore_append_commit_seconds"

# A request message as the transport delivers it; the transport's functions read it.
RequestT = TypeVar("RequestT")

# How much one transaction may take from a stream; what arrives meanwhile waits for the next.
BATCH_EVENTS = 2000
BATCH_BYTES = 8 * 1024 * 1024
# What a stream may read ahead of its writer: bounds memory per stream and pushes back on a
# client that sends faster than its messages commit.
READ_AHEAD_MESSAGES = 256
READ_AHEAD_BYTES = 32 * 1024 * 1024


@dataclass
class AppendTotals:
    """What an AppendEvents stream did in all."""

    appended: int = 0
    duplicates: int = 0
    last_seq: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class AppendAck:
    """The acknowledgement of one AppendStream request: what it did, or why it wrote nothing."""

    request_id: str
    outcome: AppendOutcome | None
    error: DomainError | None


@dataclass(frozen=True)
class _Validated:
    message: AppendMessage
    size_bytes: int
    index: int
    request_id: str


@dataclass(frozen=True)
class _Refused:
    """A request message that failed validation (or decoding): it writes nothing."""

    index: int
    request_id: str
    error: DomainError


@dataclass(frozen=True)
class _Stopped:
    """The end of the request stream, or the error that ended reading it."""

    error: BaseException | None


_Item = _Validated | _Refused


@dataclass(frozen=True)
class _Transport(Generic[RequestT]):
    """How to read the transport's request messages: their fields (which may raise a
    DomainError, for what cannot be decoded), and the client's id for each."""

    fields: Callable[[RequestT], AppendFields]
    request_id: Callable[[RequestT], str]


class AppendService:
    def __init__(
        self,
        repository: EventRepository,
        limits: Limits,
        key_limiter: KeyLimiter,
        on_commit: Callable[[list[tuple[str, str]]], None] = lambda appended: None,
    ) -> None:
        self._key_limiter = key_limiter
        self._repository = repository
        self._limits = limits
        # Told the (app_name, session_id) of every committed append: live followers wait.
        self._on_commit = on_commit

    async def append_stream(
        self,
        caller: Caller,
        requests: AsyncIterator[RequestT],
        decode: Callable[[RequestT], AppendFields],
        recheck: Recheck | None = None,
    ) -> AppendTotals:
        """Append every request message of a stream, each all-or-nothing and committed while
        the stream goes on. Messages that arrive while a commit is in flight are committed
        together in the next transaction. On the first failing message, everything before it
        stays committed and its error is raised (with `message_index` in its metadata)."""
        caller.check_writes()
        totals = AppendTotals()
        transport = _Transport(decode, lambda request: "")
        async with _reading(self, caller, requests, transport, keep_going=False) as next_batch:
            while True:
                batch, stopped = await next_batch()
                validated = [item for item in batch if isinstance(item, _Validated)]
                if validated and recheck is not None:
                    await recheck()
                if validated:
                    try:
                        events = sum(len(item.message.events) for item in validated)
                        self._key_limiter.take_events(caller, events)
                    except RateLimited as exc:
                        exc.metadata["message_index"] = str(validated[0].index)
                        raise
                    result = await self._commit(caller, [item.message for item in validated])
                    self._ring(result.outcomes)
                    for outcome in result.outcomes:
                        totals.appended += outcome.appended
                        totals.duplicates += outcome.duplicates
                        totals.last_seq[outcome.session_id] = outcome.last_seq
                    if result.failure is not None:
                        failed = validated[len(result.outcomes)]
                        result.failure.metadata["message_index"] = str(failed.index)
                        raise result.failure
                if stopped is not None:
                    if stopped.error is not None:
                        raise stopped.error
                    return totals

    async def acknowledged_stream(
        self,
        caller: Caller,
        requests: AsyncIterator[RequestT],
        decode: Callable[[RequestT], AppendFields],
        request_id: Callable[[RequestT], str],
        recheck: Recheck | None = None,
    ) -> AsyncIterator[AppendAck]:
        """One acknowledgement per request message, in order, once it has committed or
        failed; a failing message writes nothing and the stream goes on. Messages that arrive
        while a commit is in flight are committed together in the next transaction."""
        caller.check_writes()
        transport = _Transport(decode, request_id)
        async with _reading(self, caller, requests, transport, keep_going=True) as next_batch:
            while True:
                batch, stopped = await next_batch()
                if batch and recheck is not None:
                    await recheck()  # a key revoked while the stream is open ends it
                for ack in await self._commit_each(caller, batch):
                    yield ack
                if stopped is not None:
                    if stopped.error is not None:
                        raise stopped.error
                    return

    async def _commit_each(self, caller: Caller, batch: list[_Item]) -> list[AppendAck]:
        """Commit the batch's valid messages, together while they succeed: a message that
        fails (or is over its key's rate) is skipped and the rest committed after it. When
        the database does not answer, every message not yet committed fails with that."""
        results: dict[int, AppendOutcome | DomainError] = {}
        pending = []
        for item in batch:
            if not isinstance(item, _Validated):
                continue
            try:
                self._key_limiter.take_events(caller, len(item.message.events))
            except RateLimited as exc:
                exc.metadata["message_index"] = str(item.index)
                results[item.index] = exc
                continue
            pending.append(item)
        while pending:
            try:
                result = await self._commit(caller, [item.message for item in pending])
            except StoreUnavailable as exc:
                # The database did not answer: each request is told so (UNAVAILABLE: resend
                # it, safe by its event ids, as its commit may or may not have happened),
                # and the stream stays open for what comes next.
                for item in pending:
                    results[item.index] = exc
                break
            self._ring(result.outcomes)
            for item, outcome in zip(pending, result.outcomes, strict=False):
                results[item.index] = outcome
            committed = len(result.outcomes)
            if result.failure is None:
                break
            failed = pending[committed]
            result.failure.metadata["message_index"] = str(failed.index)
            results[failed.index] = result.failure
            pending = pending[committed + 1 :]
        acks = []
        for arrived in batch:
            if isinstance(arrived, _Refused):
                acks.append(AppendAck(arrived.request_id, None, arrived.error))
                continue
            done = results[arrived.index]
            if isinstance(done, DomainError):
                acks.append(AppendAck(arrived.request_id, None, done))
            else:
                acks.append(AppendAck(arrived.request_id, done, None))
        return acks

    async def _commit(self, caller: Caller, messages: list[AppendMessage]) -> AppendResult:
        """One transaction of the batch's messages, timed for the metrics."""
        started = time.perf_counter()
        result = await self._repository.append(caller.scope, messages)
        METRICS.observe(COMMIT_SECONDS, (), time.perf_counter() - started)
        METRICS.count(COMMITS, ())
        return result

    def _ring(self, outcomes: list[AppendOutcome]) -> None:
        METRICS.count(EVENTS_APPENDED, amount=sum(o.appended for o in outcomes))
        appended = {(o.app_name, o.session_id) for o in outcomes if o.appended}
        if appended:
            self._on_commit(sorted(appended))

    async def _read(
        self,
        caller: Caller,
        requests: AsyncIterator[RequestT],
        transport: _Transport[RequestT],
        queue: asyncio.Queue[_Item | _Stopped],
        budget: _ByteBudget,
        *,
        keep_going: bool,
    ) -> None:
        index = 0
        try:
            async for request in requests:
                request_id = transport.request_id(request)
                try:
                    validated = self._validate_message(caller, transport.fields(request), index)
                except DomainError as exc:
                    exc.metadata["message_index"] = str(index)
                    if not keep_going:
                        await queue.put(_Stopped(exc))
                        return
                    await queue.put(_Refused(index, request_id, exc))
                else:
                    await budget.take(validated.size_bytes)
                    await queue.put(
                        _Validated(validated.message, validated.size_bytes, index, request_id)
                    )
                index += 1
        except Exception as exc:
            await queue.put(_Stopped(exc))
        else:
            await queue.put(_Stopped(None))

    def _validate_message(self, caller: Caller, request: AppendFields, index: int) -> _Validated:
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
        _check_kept_times(caller, message)
        return _Validated(message, size, index, "")


@contextlib.asynccontextmanager
async def _reading(
    service: AppendService,
    caller: Caller,
    requests: AsyncIterator[RequestT],
    transport: _Transport[RequestT],
    *,
    keep_going: bool,
) -> AsyncIterator[Callable[[], Awaitable[tuple[list[_Item], _Stopped | None]]]]:
    """Reads the request stream in a task of its own for as long as the block runs; yields
    the function that takes the next batch (and gives its read-ahead back)."""
    queue: asyncio.Queue[_Item | _Stopped] = asyncio.Queue(READ_AHEAD_MESSAGES)
    budget = _ByteBudget(READ_AHEAD_BYTES)
    reader = asyncio.create_task(
        service._read(caller, requests, transport, queue, budget, keep_going=keep_going)
    )

    async def next_batch() -> tuple[list[_Item], _Stopped | None]:
        batch, stopped = await _next_batch(queue)
        await budget.release(sum(i.size_bytes for i in batch if isinstance(i, _Validated)))
        return batch, stopped

    try:
        yield next_batch
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


class _ByteBudget:
    """Bytes of messages read but not yet taken by the writer, held under a limit. One message
    larger than the limit still passes alone."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._held = 0
        self._changed = asyncio.Condition()
        self._waiting = 0
        # Set while a take waits for room: the reader is held back, the client pushed back.
        self.stalled = asyncio.Event()

    def _fits(self, size: int) -> bool:
        return self._held == 0 or self._held + size <= self._limit

    async def take(self, size: int) -> None:
        # Usually there is room: no lock then (one event loop, nothing runs in between),
        # since this runs for every message of every stream.
        if not self._fits(size):
            self._waiting += 1
            self.stalled.set()
            try:
                async with self._changed:
                    await self._changed.wait_for(lambda: self._fits(size))
            finally:
                self._waiting -= 1
                if not self._waiting:
                    self.stalled.clear()
        self._held += size

    async def release(self, size: int) -> None:
        if size:
            self._held -= size
            async with self._changed:
                self._changed.notify_all()


async def _next_batch(
    queue: asyncio.Queue[_Item | _Stopped],
) -> tuple[list[_Item], _Stopped | None]:
    """What has arrived: at least one item (waiting for it), then whatever is already queued,
    up to the batch limits."""
    batch: list[_Item] = []
    events = size = 0
    item = await queue.get()
    while True:
        if isinstance(item, _Stopped):
            return batch, item
        batch.append(item)
        if isinstance(item, _Validated):
            events += len(item.message.events)
            size += item.size_bytes
        if events >= BATCH_EVENTS or size >= BATCH_BYTES or queue.empty():
            return batch, None
        item = queue.get_nowait()


def _check_kept_times(caller: Caller, message: AppendMessage) -> None:
    """An event's own create_time is kept only for an admin: importing history from elsewhere
    is an operator's task, and time filters and retention trust these times."""
    for position, event in enumerate(message.events):
        if event.create_time is not None:
            caller.check_admin(f"events[{position}].create_time")


def _check_typed_data(message: AppendMessage) -> None:
    """Validate `data` of well-known event types against their models."""
    violations: list[FieldViolation] = []
    for position, event in enumerate(message.events):
        if event.type == REMOVAL_NOTICE:
            violations.append(
                FieldViolation(
                    f"events[{position}].type",
                    f"{REMOVAL_NOTICE} is written by the server when events are removed",
                )
            )
            continue
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
