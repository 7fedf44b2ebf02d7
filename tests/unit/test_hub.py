"""The live hub: one read per ring for every follower of a channel, merged deliveries, gaps
reported instead of events lost, and a close that reaches every follower."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from agentstore.background import BackgroundTasks
from agentstore.domain.errors import LimitExceeded
from agentstore.domain.events import Event, FeedPosition, FeedScope
from agentstore.live.hub import Batch, Hub, Subscription

WAIT = 5.0  # generous: every wait below ends on an event, never on this


def make_event(seq: int, session_id: str = "s-1") -> Event:
    return Event(
        session_id, seq, f"e-{seq}", seq, "note", "", "", "", "", "", f"text {seq}", None,
        None, None, datetime(2026, 12, 1, tzinfo=UTC),
    )  # fmt: skip


class Table:
    """An event log in memory, standing in for the store; counts the reads it serves."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.reads = 0

    async def read_session(self, session_id: str, after: int, limit: int) -> list[Event]:
        self.reads += 1
        return [e for e in self.events if e.session_id == session_id and e.seq > after][:limit]

    async def read_feed(
        self, scope: FeedScope, after: FeedPosition, limit: int
    ) -> list[tuple[FeedPosition, Event]]:
        return []


@pytest.fixture
async def tasks() -> AsyncIterator[BackgroundTasks]:
    owned = BackgroundTasks()
    yield owned
    await owned.close()


def hub_over(table: Table, tasks: BackgroundTasks, buffer_batches: int = 8) -> Hub:
    return Hub(
        table.read_session, table.read_feed,
        tasks=tasks, buffer_batches=buffer_batches, max_streams=2,
    )  # fmt: skip


def batch(after: int, *seqs: int) -> Batch[int]:
    return Batch(after, [(seq, make_event(seq)) for seq in seqs])


async def test_queued_batches_arrive_merged_in_one_delivery(tasks: BackgroundTasks) -> None:
    subscription = hub_over(Table(), tasks).follow_session("s-1", 0)
    subscription.offer(batch(0, 1, 2))
    subscription.offer(batch(2, 3))
    delivery = await subscription.next(0, WAIT)
    assert [seq for seq, _ in delivery.events] == [1, 2, 3]
    assert not delivery.gap


async def test_events_the_follower_already_has_are_left_out(tasks: BackgroundTasks) -> None:
    subscription = hub_over(Table(), tasks).follow_session("s-1", 0)
    subscription.offer(batch(0, 1, 2, 3))
    delivery = await subscription.next(2, WAIT)  # it read 1 and 2 from the table
    assert [seq for seq, _ in delivery.events] == [3]


async def test_a_batch_past_the_followers_position_is_a_gap(tasks: BackgroundTasks) -> None:
    subscription = hub_over(Table(), tasks).follow_session("s-1", 0)
    subscription.offer(batch(0, 1))
    subscription.offer(batch(5, 6))  # 2..5 never came here
    first = await subscription.next(0, WAIT)
    assert [seq for seq, _ in first.events] == [1]
    assert (await subscription.next(1, WAIT)).gap


async def test_a_follower_that_falls_behind_is_told_of_the_gap_once(
    tasks: BackgroundTasks,
) -> None:
    subscription = hub_over(Table(), tasks, buffer_batches=2).follow_session("s-1", 0)
    for seq in range(1, 5):  # the third and fourth do not fit: dropped
        subscription.offer(batch(seq - 1, seq))
    assert (await subscription.next(0, WAIT)).gap
    subscription.offer(batch(4, 5))
    after_gap = await subscription.next(4, WAIT)  # it read 1..4 from the table meanwhile
    assert [seq for seq, _ in after_gap.events] == [5]


async def test_nothing_new_times_out(tasks: BackgroundTasks) -> None:
    subscription = hub_over(Table(), tasks).follow_session("s-1", 0)
    with pytest.raises(TimeoutError):
        await subscription.next(0, 0.01)


async def test_closing_the_hub_ends_every_follower_even_one_waiting(
    tasks: BackgroundTasks,
) -> None:
    hub = hub_over(Table(), tasks)
    idle, waiting = hub.follow_session("s-1", 0), hub.follow_session("s-2", 0)
    pending = tasks.spawn(_closed_after_wait(waiting), name="waiting follower")
    hub.close()
    assert (await idle.next(0, WAIT)).closed
    await pending
    assert (await hub.follow_session("s-3", 0).next(0, WAIT)).closed  # and any new one


async def _closed_after_wait(subscription: Subscription[int]) -> None:
    delivery = await subscription.next(0, WAIT)
    if not delivery.closed:  # a wake-up with nothing: the next call reports the close
        delivery = await subscription.next(0, WAIT)
    assert delivery.closed


async def test_a_ring_reads_the_table_once_for_every_follower(tasks: BackgroundTasks) -> None:
    table = Table()
    hub = hub_over(table, tasks)
    followers = [hub.follow_session("s-1", 0) for _ in range(5)]
    table.events += [make_event(1), make_event(2)]
    hub.ring("app", "s-1")
    deliveries = [await follower.next(0, WAIT) for follower in followers]
    assert [[seq for seq, _ in d.events] for d in deliveries] == [[1, 2]] * 5
    assert table.reads == 1
    # Every follower got the same event objects: converted once for all of them.
    assert len({id(d.events[0][1]) for d in deliveries}) == 1


async def test_the_channel_goes_when_its_last_follower_does(tasks: BackgroundTasks) -> None:
    hub = hub_over(Table(), tasks)
    first, second = hub.follow_session("s-1", 0), hub.follow_session("s-1", 0)
    assert len(tasks) == 1  # one reader task for the session's channel
    hub.unfollow(first)
    assert len(tasks) == 1
    hub.unfollow(second)
    await tasks.close()  # waits for the cancelled reader
    assert len(tasks) == 0


def test_streams_past_the_maximum_are_refused(tasks: BackgroundTasks) -> None:
    hub = hub_over(Table(), tasks)
    hub.open_stream()
    hub.open_stream()
    with pytest.raises(LimitExceeded) as refused:
        hub.open_stream()
    assert refused.value.reason == "TOO_MANY_STREAMS"
    hub.close_stream()
    hub.open_stream()
    assert hub.open_streams == 2
