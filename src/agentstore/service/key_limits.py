"""What one key may use of this server: streams open at once, and events appended a second
(a token bucket: a steady rate and a burst). Kept per replica, in memory, like Temporal's
per-host limits: with N replicas a key may use up to N times as much in all. Calls without a
key (ANONYMOUS, with `--auth none`) are not limited here; the server-wide limits still apply.
One key over its share gets RESOURCE_EXHAUSTED with a RetryInfo; the others are not slowed."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from agentstore.domain.callers import ANONYMOUS, Caller
from agentstore.domain.errors import RateLimited

__all__ = ["KeyLimiter"]


@dataclass
class _Bucket:
    tokens: float
    updated: float


class KeyLimiter:
    def __init__(
        self,
        *,
        max_streams: int,
        append_rate: float,
        append_burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_streams = max_streams
        self._rate = append_rate
        self._burst = append_burst
        self._clock = clock
        self._streams: dict[str, int] = {}
        self._buckets: dict[str, _Bucket] = {}

    def open_stream(self, caller: Caller) -> None:
        """Count one more open stream of the caller's key; raises `RateLimited` at its max."""
        if caller is ANONYMOUS:
            return
        open_now = self._streams.get(caller.name, 0)
        if open_now >= self._max_streams:
            raise RateLimited(
                f"this key already has {open_now} streams open on this server "
                f"(its limit: {self._max_streams})",
                reason="KEY_STREAMS_EXHAUSTED",
                retry_after_seconds=1.0,
            )
        self._streams[caller.name] = open_now + 1

    def close_stream(self, caller: Caller) -> None:
        if caller is ANONYMOUS:
            return
        left = self._streams.get(caller.name, 0) - 1
        if left > 0:
            self._streams[caller.name] = left
        else:
            self._streams.pop(caller.name, None)

    def take_events(self, caller: Caller, count: int) -> None:
        """Take `count` events from the key's bucket; raises `RateLimited`, taking none,
        when it does not hold that many (a message larger than the burst waits for a full
        bucket, then goes alone)."""
        if caller is ANONYMOUS or count == 0:
            return
        now = self._clock()
        bucket = self._buckets.get(caller.name)
        if bucket is None:
            bucket = self._buckets[caller.name] = _Bucket(float(self._burst), now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        needed = min(count, self._burst)
        if bucket.tokens < needed:
            raise RateLimited(
                f"this key appends more than {self._rate:g} events a second "
                f"(a burst of {self._burst}) on this server",
                reason="KEY_APPEND_RATE_EXCEEDED",
                retry_after_seconds=(needed - bucket.tokens) / self._rate,
            )
        bucket.tokens -= count
