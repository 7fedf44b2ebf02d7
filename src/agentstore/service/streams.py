"""StreamEvents: replay from any point, then follow live, for one session or a feed across the
sessions of an app, without losing, repeating or reordering an event.

The order of steps is what makes it safe: replay pages through the table; then the follower
registers with the hub BEFORE its last catch-up read (an event committed in between is then
either in that read or in a batch the hub delivers); then the client is told it is caught
up. A batch that does not start where the follower stands (a gap), or a follower that fell
behind and had batches dropped, sends it back to the table."""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from agentstore.domain.callers import Caller, Recheck, Scope
from agentstore.domain.errors import InvalidArgument, ServerShuttingDown
from agentstore.domain.events import FEED_START, Event, FeedPosition, FeedScope, RequiredLabel
from agentstore.domain.limits import Limits
from agentstore.domain.sessions import OptionalIdentifier, Session
from agentstore.live.hub import Hub, Subscription
from agentstore.metrics import METRICS
from agentstore.service.key_limits import KeyLimiter
from agentstore.service.paging import MAX_INT64
from agentstore.service.replays import ReplayCache
from agentstore.service.requests import StreamFields
from agentstore.service.validation import validate
from agentstore.store.events import EventRepository
from agentstore.store.sessions import SessionRepository

__all__ = ["StreamMessage", "StreamService", "feed_token"]

REPLAY_PAGE = 1000
# How often a follower's credential is checked again (the key service remembers a verified
# key for as long, so that is at most one lookup a second per key).
RECHECK_SECONDS = 1.0
P = TypeVar("P", int, FeedPosition)


@dataclass(frozen=True)
class StreamMessage:
    """One message of a stream: events (with their feed tokens, for feeds), or a marker."""

    events: list[Event] = field(default_factory=list)
    # Events already encoded (a session replay's, see service/replays.py), in place of `events`.
    entries: list[bytes] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    caught_up: bool = False
    heartbeat: bool = False
    resume_token: str = ""
    # Live events come from the hub, the same objects for every follower of a channel;
    # replay and catch-up pages are read for one follower alone.
    live: bool = False

    @property
    def has_events(self) -> bool:
        return bool(self.events or self.entries)


class StreamRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    session_id: OptionalIdentifier = ""
    after_seq: int = Field(default=0, ge=0)
    app_name: OptionalIdentifier = ""
    user_id: OptionalIdentifier = ""
    agent_id: OptionalIdentifier = ""
    types: list[RequiredLabel] = Field(default_factory=list)
    follow: bool = False
    resume_token: str = ""


def feed_token(position: FeedPosition) -> str:
    """The opaque resume token of a feed position."""
    raw = f"{position[0]}.{position[1]}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _feed_position(token: str) -> FeedPosition:
    if not token:
        return FEED_START
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        tx_id, _, position = raw.partition(".")
        result = (int(tx_id), int(position))
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument.of("resume_token", "is not a token this service issued") from exc
    if not (0 <= result[0] <= MAX_INT64 and 0 <= result[1] <= MAX_INT64):
        raise InvalidArgument.of("resume_token", "is not a token this service issued")
    return result


@dataclass
class _Follow(Generic[P]):
    """How to read and follow one kind of stream."""

    read: Callable[[P, int], Awaitable[list[tuple[P, Event]]]]
    subscribe: Callable[[P], Subscription[P]]
    message: Callable[[list[tuple[P, Event]], bool], StreamMessage]
    marker: Callable[[P], str]
    # What is there before following: the table after a position, as (new position, message);
    # `_table` unless the stream has a faster way.
    replay: Callable[[P], AsyncIterator[tuple[P, StreamMessage]]] | None = None


class StreamService:
    def __init__(
        self,
        sessions: SessionRepository,
        events: EventRepository,
        hub: Hub,
        limits: Limits,
        *,
        heartbeat_seconds: float,
        key_limiter: KeyLimiter,
        replays: ReplayCache,
    ) -> None:
        self._key_limiter = key_limiter
        self._replays = replays
        self._sessions = sessions
        self._events = events
        self._hub = hub
        self._limits = limits
        self._heartbeat_seconds = heartbeat_seconds

    async def stream(
        self, caller: Caller, request: StreamFields, recheck: Recheck | None = None
    ) -> AsyncIterator[StreamMessage]:
        """The messages of one StreamEvents call; `recheck`, when given, raises once the
        caller's credential is no longer valid. Raises `InvalidArgument`, `NotFound`,
        `PermissionDenied` (a feed of an app outside the caller's scope), `LimitExceeded` (too
        many streams) and, on shutdown, `ServerShuttingDown`."""
        wanted = validate(StreamRequest, request, self._limits)
        if bool(wanted.session_id) == bool(wanted.app_name):
            raise InvalidArgument.of(
                "session_id", "give either session_id (one session) or app_name (a feed)"
            )
        if wanted.app_name:
            caller.check_app(wanted.app_name)
        self._key_limiter.open_stream(caller)
        try:
            self._hub.open_stream()
        except BaseException:
            self._key_limiter.close_stream(caller)
            raise
        try:
            if wanted.session_id:
                follow: Any = await self._session_follow(caller.scope, wanted)
                start: Any = wanted.after_seq
            else:
                if wanted.after_seq:
                    raise InvalidArgument.of(
                        "after_seq", "is for one session; feeds resume by token"
                    )
                follow = self._feed_follow(caller.scope, wanted)
                start = _feed_position(wanted.resume_token)
            async for message in self._run(follow, start, wanted.follow, recheck):
                yield message
        finally:
            self._hub.close_stream()
            self._key_limiter.close_stream(caller)

    async def _session_follow(self, scope: Scope, wanted: StreamRequest) -> _Follow[int]:
        # NotFound unless live and in scope. The hub's live reads, shared by every follower of
        # the session, need no scope of their own: the session's app never changes.
        session = await self._sessions.get(scope, wanted.session_id, with_state=False)
        session_id, types = wanted.session_id, set(wanted.types)

        async def read(after: int, limit: int) -> list[tuple[int, Event]]:
            events = await self._events.read_after(scope, session_id, after, limit)
            return [(event.seq, event) for event in events]

        def message(rows: list[tuple[int, Event]], live: bool) -> StreamMessage:
            return StreamMessage(events=_of_types([e for _, e in rows], types), live=live)

        def replay(after: int) -> AsyncIterator[tuple[int, StreamMessage]]:
            return self._session_replay(scope, session, after, types)

        return _Follow(
            read, lambda position: self._hub.follow_session(session_id, position), message,
            lambda position: "", replay,
        )  # fmt: skip

    async def _session_replay(
        self, scope: Scope, session: Session, after: int, types: set[str]
    ) -> AsyncIterator[tuple[int, StreamMessage]]:
        """A session's events after `after` as (new position, message): the part this replica
        kept from an earlier replay (service/replays.py), checked, then the table after it;
        a replay from the start records what it reads for the next one."""
        replays, position = self._replays, after
        # The table's page after the kept part, when checking that part read it already.
        read_already: list[Event] | None = None
        kept = replays.kept(session.id)
        if kept is not None and after > kept.through:
            kept = None  # the kept part is all before this replay: neither used nor extended
        elif kept is not None and kept.through:
            # Taken before reading: another replay may extend the kept one meanwhile.
            mark = kept.mark()
            through = mark.through
            page = await self._events.read_after(scope, session.id, through - 1, REPLAY_PAGE)
            if mark.holds(session.removed_count, page[0] if page else None):
                # Up to the mark: what another replay added since is in `page` too.
                sent = kept.entries_after(after, through, types)
                METRICS.count("agentstore_replay_events_from_memory_total", amount=len(sent))
                for start in range(0, len(sent), REPLAY_PAGE):
                    yield through, StreamMessage(entries=sent[start : start + REPLAY_PAGE])
                position, read_already, full = through, page[1:], len(page) == REPLAY_PAGE
            else:
                replays.forget(session.id, only=kept)
                kept = None
        if kept is None and after == 0:
            kept = replays.start(session.id, session.removed_count)
        while True:
            if read_already is None:
                events = await self._events.read_after(scope, session.id, position, REPLAY_PAGE)
                full = len(events) == REPLAY_PAGE
            else:
                events, read_already = read_already, None
            if events:
                if kept is None:
                    message = StreamMessage(events=_of_types(events, types))
                else:
                    message = _encoded_message(
                        events, replays.record(kept, position, events), types
                    )
                position = events[-1].seq
                yield position, message
            if not full:
                return

    def _feed_follow(self, scope: Scope, wanted: StreamRequest) -> _Follow[FeedPosition]:
        feed = FeedScope(wanted.app_name, wanted.user_id, wanted.agent_id)
        types = set(wanted.types)

        async def read(after: FeedPosition, limit: int) -> list[tuple[FeedPosition, Event]]:
            return await self._events.read_feed(scope, feed, after, limit)

        def message(rows: list[tuple[FeedPosition, Event]], live: bool) -> StreamMessage:
            kept = [(p, e) for p, e in rows if not types or e.type in types]
            return StreamMessage(
                events=[e for _, e in kept],
                tokens=[feed_token(p) for p, _ in kept],
                resume_token=feed_token(rows[-1][0]) if rows else "",
                live=live,
            )

        return _Follow(
            read, lambda position: self._hub.follow_feed(feed, position), message, feed_token
        )

    async def _run(
        self, follow: _Follow[P], start: P, live: bool, recheck: Recheck | None
    ) -> AsyncIterator[StreamMessage]:
        position = start
        replay = follow.replay(position) if follow.replay else _table(follow, position)
        async for page_end, message in replay:
            position = page_end
            if message.has_events:
                yield message
        if not live:
            yield StreamMessage(caught_up=True, resume_token=follow.marker(position))
            return
        subscription = follow.subscribe(position)
        try:
            async for page_end, message in _table(follow, position):
                position = page_end
                if message.has_events:
                    yield message
            yield StreamMessage(caught_up=True, resume_token=follow.marker(position))
            # With a credential to recheck, wake at least every RECHECK_SECONDS to do so: a
            # revoked key ends its open streams too.
            wait = self._heartbeat_seconds
            if recheck is not None:
                wait = min(wait, RECHECK_SECONDS)
            quiet_since = time.monotonic()
            while True:
                try:
                    delivery = await subscription.next(position, wait)
                except TimeoutError:
                    if recheck is not None:
                        await recheck()
                    if time.monotonic() - quiet_since >= self._heartbeat_seconds:
                        quiet_since = time.monotonic()
                        yield StreamMessage(heartbeat=True, resume_token=follow.marker(position))
                    continue
                if recheck is not None:
                    await recheck()
                quiet_since = time.monotonic()
                if delivery.closed:
                    raise ServerShuttingDown("the server is shutting down; reconnect")
                if delivery.gap:
                    async for page_end, message in _table(follow, position):
                        position = page_end
                        if message.has_events:
                            yield message
                elif delivery.events:
                    position = delivery.events[-1][0]
                    if (message := follow.message(delivery.events, True)).events:
                        yield message
        finally:
            self._hub.unfollow(subscription)


def _of_types(events: list[Event], types: set[str]) -> list[Event]:
    """The events of the given types (empty: all)."""
    return [event for event in events if not types or event.type in types]


def _encoded_message(events: list[Event], entries: list[bytes], types: set[str]) -> StreamMessage:
    """A message of the events' entries, of the given types (empty: all)."""
    if not types:
        return StreamMessage(entries=entries)
    return StreamMessage(
        entries=[entry for entry, event in zip(entries, events, strict=True) if event.type in types]
    )


async def _table(follow: _Follow[P], position: P) -> AsyncIterator[tuple[P, StreamMessage]]:
    """Everything in the table after `position`, page by page, as (new position, message).
    A message may have no events (the follower's types filtered them all out): the position
    moves on all the same."""
    async for rows in _read_all(follow.read, position):
        yield rows[-1][0], follow.message(rows, False)


async def _read_all(
    read: Callable[[P, int], Awaitable[list[tuple[P, Event]]]], position: P
) -> AsyncIterator[list[tuple[P, Event]]]:
    """Pages of everything after `position`, until a page comes back short."""
    while True:
        rows = await read(position, REPLAY_PAGE)
        if rows:
            yield rows
            position = rows[-1][0]
        if len(rows) < REPLAY_PAGE:
            return
