"""The fan-out of new events to this replica's followers.

Followers of the same session (or the same feed across sessions) share a channel. A ring of
the doorbell marks the channel dirty; its one task then reads what is new from the table,
once for all its followers, and offers the batch to each. Each follower has a bounded queue:
one that falls behind stops receiving batches and reads the table itself (catch-up) until it
is current, so memory stays bounded and nothing is lost. A slow poll, one query per replica,
rings the channels of sessions that changed without a ring (a lost notification, a write
made outside this service) as a safety net."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from agentstore.background import BackgroundTasks
from agentstore.domain.errors import DomainError, LimitExceeded
from agentstore.domain.events import Event, FeedPosition, FeedScope
from agentstore.metrics import METRICS

__all__ = ["Batch", "Delivery", "Hub", "Subscription"]

log = logging.getLogger(__name__)

# Where a follower stands: a seq for one session, a (tx_id, position) for a feed.
P = TypeVar("P", int, FeedPosition)
READ_LIMIT = 1000
READ_RETRY_SECONDS = 0.5


@dataclass(frozen=True)
class Batch(Generic[P]):
    """Events the channel read, in order: all there were after `after` up to the last."""

    after: P
    events: list[tuple[P, Event]]


@dataclass(frozen=True)
class Delivery(Generic[P]):
    """What a follower gets next: the events after its position, in order (possibly none,
    when what arrived was already behind it); or `gap`: batches were dropped or missed, and
    the follower must read the table from its position before asking again; or `closed`:
    the hub is shutting down and the follower must end."""

    events: list[tuple[P, Event]] = field(default_factory=list)
    gap: bool = False
    closed: bool = False


_GAP: Delivery[Any] = Delivery(gap=True)
_CLOSED: Delivery[Any] = Delivery(closed=True)


class Subscription(Generic[P]):
    """One follower's mailbox: the channel offers it batches, the follower takes them with
    `next()`. A bounded queue: a follower that does not keep up has batches dropped, and is
    told of the gap instead."""

    def __init__(self, channel: Channel[P], buffer_batches: int) -> None:
        self.channel: Channel[P] = channel
        self._queue: asyncio.Queue[Batch[P] | None] = asyncio.Queue(buffer_batches)
        self._lagging = False
        self._closed = False

    async def next(self, position: P, wait_seconds: float) -> Delivery[P]:
        """The events after `position` from every batch queued (waiting for one), merged, so
        a follower that is behind catches up in fewer, larger messages. Raises TimeoutError
        after `wait_seconds` without any."""
        if self._closed:
            return _CLOSED
        if self._lagging:
            # What is queued is older than the table read the follower now makes: drop it,
            # making room for what comes next.
            while not self._queue.empty():
                if self._queue.get_nowait() is None:
                    return _CLOSED
            self._lagging = False
            return _GAP
        batch = await self._get(wait_seconds)
        merged: list[tuple[P, Event]] = []
        while batch is not None:
            last = merged[-1][0] if merged else position
            if batch.after > last:
                # Events between where the follower stands and this batch never came here
                # (read before it subscribed, or dropped): the table has them.
                self._lagging = True
                break
            merged.extend((p, event) for p, event in batch.events if p > last)
            batch = None if self._queue.empty() else self._queue.get_nowait()
        return Delivery(merged)

    async def _get(self, wait_seconds: float) -> Batch[P] | None:
        # Not asyncio.wait_for: on Python 3.11 it starts a task per call, and this runs per
        # delivery.
        if not self._queue.empty():
            return self._queue.get_nowait()
        async with asyncio.timeout(wait_seconds):
            return await self._queue.get()

    def offer(self, batch: Batch[P]) -> None:
        if self._lagging or self._closed:
            return
        try:
            self._queue.put_nowait(batch)
        except asyncio.QueueFull:
            self._lagging = True
            METRICS.count("agentstore_follower_fallbacks_total")
        else:
            METRICS.count("agentstore_live_deliveries_total")

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)  # wakes a follower waiting in next()


@dataclass(eq=False)
class Channel(Generic[P]):
    """The followers of one session or feed, and the task that reads for them."""

    read: Callable[[P, int], Awaitable[list[tuple[P, Event]]]]
    position: P
    # Removes the channel from the hub once its last follower has gone.
    forget: Callable[[], object]
    subscribers: set[Subscription[P]] = field(default_factory=set)
    dirty: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            try:
                await self._read_new()
            except DomainError as exc:  # the database is away: try again soon
                log.warning("live read failed", extra={"error": exc.message})
                await asyncio.sleep(READ_RETRY_SECONDS)
                self.dirty.set()
            except Exception:
                # A bug must not silence every follower of this channel for good.
                log.exception("live read failed unexpectedly")
                await asyncio.sleep(READ_RETRY_SECONDS)
                self.dirty.set()

    async def _read_new(self) -> None:
        while True:
            rows = await self.read(self.position, READ_LIMIT)
            if not rows:
                return
            batch = Batch(self.position, rows)
            self.position = rows[-1][0]
            for subscriber in list(self.subscribers):
                subscriber.offer(batch)
            if len(rows) < READ_LIMIT:
                return


class Hub:
    """All channels of this replica, and the count of open streams."""

    def __init__(
        self,
        read_session: Callable[[str, int, int], Awaitable[list[Event]]],
        read_feed: Callable[
            [FeedScope, FeedPosition, int], Awaitable[list[tuple[FeedPosition, Event]]]
        ],
        *,
        tasks: BackgroundTasks,
        buffer_batches: int,
        max_streams: int,
    ) -> None:
        self._tasks = tasks
        self._read_session = read_session
        self._read_feed = read_feed
        self._buffer_batches = buffer_batches
        self._max_streams = max_streams
        self._sessions: dict[str, Channel[int]] = {}
        self._feeds: dict[FeedScope, Channel[FeedPosition]] = {}
        self._streams = 0
        # Polls of the safety net done so far, for whoever waits on them (polled()).
        self.polls = 0
        self._polled = asyncio.Condition()
        self._closed = False

    @property
    def open_streams(self) -> int:
        return self._streams

    def open_stream(self) -> None:
        """Count a stream in; raises `LimitExceeded` at the configured maximum."""
        if self._streams >= self._max_streams:
            raise LimitExceeded(
                "stream", f"this server already serves {self._max_streams} streams",
                reason="TOO_MANY_STREAMS", limit=self._max_streams,
            )  # fmt: skip
        self._streams += 1

    def close_stream(self) -> None:
        self._streams -= 1

    def follow_session(self, session_id: str, position: int) -> Subscription[int]:
        async def read(after: int, limit: int) -> list[tuple[int, Event]]:
            events = await self._read_session(session_id, after, limit)
            return [(event.seq, event) for event in events]

        return self._subscribe(self._sessions, session_id, read, position)

    def follow_feed(self, scope: FeedScope, position: FeedPosition) -> Subscription[FeedPosition]:
        def read(after: FeedPosition, limit: int) -> Awaitable[list[tuple[FeedPosition, Event]]]:
            return self._read_feed(scope, after, limit)

        return self._subscribe(self._feeds, scope, read, position)

    def _subscribe(
        self,
        channels: dict[Any, Channel[P]],
        key: Hashable,
        read: Callable[[P, int], Awaitable[list[tuple[P, Event]]]],
        position: P,
    ) -> Subscription[P]:
        channel = channels.get(key)
        if channel is None:
            channel = Channel(read, position, forget=lambda: channels.pop(key, None))
            channel.task = self._tasks.spawn(channel.run(), name=f"live:{key}")
            channels[key] = channel
        subscription = Subscription(channel, self._buffer_batches)
        if self._closed:
            subscription.close()
        channel.subscribers.add(subscription)
        return subscription

    def unfollow(self, subscription: Subscription[Any]) -> None:
        channel = subscription.channel
        channel.subscribers.discard(subscription)
        if channel.subscribers:
            return
        channel.forget()
        if channel.task is not None:
            channel.task.cancel()

    def ring(self, app_name: str, session_id: str) -> None:
        """Something was appended to this session: its channel and its app's feeds read."""
        if (channel := self._sessions.get(session_id)) is not None:
            channel.dirty.set()
        for scope, feed in self._feeds.items():
            if scope.app_name == app_name:
                feed.dirty.set()

    def _channels(self) -> list[Channel[Any]]:
        return [*self._sessions.values(), *self._feeds.values()]

    def ring_all(self) -> None:
        for channel in self._channels():
            channel.dirty.set()

    async def poll(
        self,
        interval: float,
        changed_since: Callable[[str | None], Awaitable[tuple[list[tuple[str, str]], str]]],
    ) -> None:
        """Every `interval` seconds, until cancelled, ring the channels of the sessions that
        changed since the last poll: one query per replica however many follow, and none
        read while nothing changes. When that query fails, every channel is rung."""
        watermark: str | None = None
        while True:
            await asyncio.sleep(interval)
            try:
                changed, watermark = await changed_since(watermark)
            except DomainError as exc:
                log.warning("live poll failed", extra={"error": exc.message})
                self.ring_all()
                continue
            for app_name, session_id in changed:
                self.ring(app_name, session_id)
            async with self._polled:
                self.polls += 1
                self._polled.notify_all()

    async def polled(self, count: int) -> None:
        """Return once the safety net has polled `count` times in all."""
        async with self._polled:
            await self._polled.wait_for(lambda: self.polls >= count)

    def close(self) -> None:
        """Shutting down: every follower is told to end its stream."""
        self._closed = True
        for channel in self._channels():
            for subscription in list(channel.subscribers):
                subscription.close()
