"""Per-key limits: streams at once, and a token bucket of appended events."""

from __future__ import annotations

import pytest

from agentstore.domain.callers import ANONYMOUS, Caller, Role, Scope
from agentstore.domain.errors import RateLimited
from agentstore.service.key_limits import KeyLimiter

KEY_A = Caller("key_a", Scope(("app",)), Role.WRITER)
KEY_B = Caller("key_b", Scope(("app",)), Role.WRITER)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock) -> KeyLimiter:
    return KeyLimiter(max_streams=2, append_rate=10.0, append_burst=20, clock=clock)


def test_a_key_may_open_its_streams_and_no_more_while_others_go_on() -> None:
    limits = limiter(Clock())
    limits.open_stream(KEY_A)
    limits.open_stream(KEY_A)
    with pytest.raises(RateLimited) as refused:
        limits.open_stream(KEY_A)
    assert refused.value.reason == "KEY_STREAMS_EXHAUSTED"
    limits.open_stream(KEY_B)
    limits.close_stream(KEY_A)
    limits.open_stream(KEY_A)
    for _ in range(5):
        limits.open_stream(ANONYMOUS)  # no key, no per-key limit


def test_appends_refill_at_the_rate_up_to_the_burst() -> None:
    clock = Clock()
    limits = limiter(clock)
    limits.take_events(KEY_A, 20)  # the whole burst at once
    with pytest.raises(RateLimited) as refused:
        limits.take_events(KEY_A, 5)
    assert refused.value.retry_after_seconds == pytest.approx(0.5)  # 5 events at 10 a second
    limits.take_events(KEY_B, 20)  # another key is not slowed
    clock.now += 0.5
    limits.take_events(KEY_A, 5)
    clock.now += 100  # a long pause refills only up to the burst
    limits.take_events(KEY_A, 20)
    with pytest.raises(RateLimited):
        limits.take_events(KEY_A, 1)


def test_a_message_larger_than_the_burst_goes_alone_on_a_full_bucket() -> None:
    clock = Clock()
    limits = limiter(clock)
    limits.take_events(KEY_A, 50)  # over the burst of 20: the bucket goes into debt
    with pytest.raises(RateLimited) as refused:
        limits.take_events(KEY_A, 1)
    assert refused.value.retry_after_seconds == pytest.approx(3.1)  # from -30 back to 1
