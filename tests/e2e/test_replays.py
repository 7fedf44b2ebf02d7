"""Replays and ListEvents pages from memory: a session read again is sent from what its replica
kept, and never sends what was taken back, or what another session under the same id held.
What the table holds is read through a server that keeps nothing (`table`)."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from agentstore.metrics import METRICS
from agentstore.v1 import session_service_pb2 as pb
from agentstore.v1.session_service_pb2_grpc import SessionServiceStub
from tests.conftest import extra_server
from tests.e2e.events_support import all_events, append, event, message

FROM_MEMORY = "agentstore_replay_events_from_memory_total"


def sent_from_memory() -> float:
    """This process's count of events replays sent from memory (every in-process server)."""
    found = re.search(rf"^{FROM_MEMORY} (\S+)$", METRICS.render(), re.MULTILINE)
    return float(found[1]) if found else 0.0


async def replay(stub: SessionServiceStub, session_id: str, **request: Any) -> list[Any]:
    responses = stub.StreamEvents(pb.StreamEventsRequest(session_id=session_id, **request))
    return [e async for response in responses for e in response.events]


async def pages(
    stub: SessionServiceStub, session_id: str, page_size: int, **filters: Any
) -> list[pb.ListEventsResponse]:
    """Every ListEvents page of the session, as sent."""
    responses: list[pb.ListEventsResponse] = []
    token = ""
    while True:
        request = pb.ListEventsRequest(
            session_id=session_id, page_size=page_size, page_token=token, **filters
        )
        responses.append(await stub.ListEvents(request))
        token = responses[-1].next_page_token
        if not token:
            return responses


async def same_pages(
    stub: SessionServiceStub, table: SessionServiceStub, session_id: str, page_size: int,
    **filters: Any,
) -> list[pb.ListEventsResponse]:  # fmt: skip
    """The pages `stub` sends, checked against those the table gives: the same events, cut
    into the same pages with the same tokens."""
    sent = await pages(stub, session_id, page_size, **filters)
    assert sent == await pages(table, session_id, page_size, **filters), (page_size, filters)
    return sent


async def new_session(stub: SessionServiceStub, app_name: str) -> str:
    return (await stub.CreateSession(pb.CreateSessionRequest(app_name=app_name, user_id="u"))).id


async def add(stub: SessionServiceStub, session_id: str, texts: list[str], **fields: Any) -> None:
    events = [
        event(text, type="note" if n % 3 else "tool_call", data={"n": n, "text": text}, **fields)
        for n, text in enumerate(texts)
    ]
    await append(stub, message(session_id, events))


@pytest.fixture
async def table(database_url: str) -> AsyncIterator[SessionServiceStub]:
    """A server that keeps no replays: what it sends is read from the table."""
    async with extra_server(database_url, replay_cache="0") as stub:
        yield stub


@pytest.fixture
async def replica(database_url: str) -> AsyncIterator[SessionServiceStub]:
    """A second server on the run's database, with a replay memory of its own."""
    async with extra_server(database_url) as stub:
        yield stub


async def test_a_session_replayed_again_comes_from_memory_and_the_table_after_it(
    stub: SessionServiceStub, table: SessionServiceStub, app_name: str
) -> None:
    session_id = await new_session(stub, app_name)
    await add(stub, session_id, [f"first {n}" for n in range(30)])
    first = await replay(stub, session_id)
    assert first == await all_events(table, session_id)
    await add(stub, session_id, [f"then {n}" for n in range(5)], state_delta={"k": 1})
    before = sent_from_memory()
    second = await replay(stub, session_id)
    assert sent_from_memory() - before == 30
    assert second == await all_events(table, session_id)
    assert second[:30] == first
    assert [e.seq for e in second] == list(range(1, 36))
    # A later start and a type filter take their part of what was kept.
    before = sent_from_memory()
    part = await replay(stub, session_id, after_seq=10, types=["tool_call"])
    assert part == await all_events(table, session_id, after_seq=10, types=["tool_call"])
    assert sent_from_memory() - before == len([e for e in second[10:] if e.type == "tool_call"])


async def test_events_removed_through_another_replica_are_never_sent_from_memory(
    stub: SessionServiceStub, table: SessionServiceStub, replica: SessionServiceStub, app_name: str
) -> None:
    session_id = await new_session(stub, app_name)
    await add(stub, session_id, ["one", "two", "the zanzibar secret", "four", "five"])
    assert "the zanzibar secret" in [e.content.text for e in await replay(stub, session_id)]
    await replica.RemoveEvents(
        pb.RemoveEventsRequest(session_id=session_id, seqs=pb.SeqRange(first=3, last=3))
    )
    again = await replay(stub, session_id)
    assert [e.content.text for e in again if e.content.text] == ["one", "two", "four", "five"]
    assert again == await all_events(table, session_id)
    assert [(e.seq, e.type) for e in again][-1] == (6, "events_removed")


async def test_a_session_purged_and_imported_again_elsewhere_is_read_anew(
    stub: SessionServiceStub, table: SessionServiceStub, replica: SessionServiceStub, app_name: str
) -> None:
    session_id = await new_session(stub, app_name)
    await add(stub, session_id, ["kept a", "kept b", "kept c"])
    kept = await replay(stub, session_id)
    created = (await stub.GetSession(pb.GetSessionRequest(session_id=session_id))).create_time
    # The same id, creation time and events' seqs, on another replica: only the rows differ.
    await replica.DeleteSession(pb.DeleteSessionRequest(session_id=session_id, purge=True))
    await replica.CreateSession(
        pb.CreateSessionRequest(
            session_id=session_id, app_name=app_name, user_id="u", create_time=created
        )
    )
    await add(replica, session_id, ["new a", "new b", "new c"])
    again = await replay(stub, session_id)
    assert [e.content.text for e in again] == ["new a", "new b", "new c"]
    assert again == await all_events(table, session_id)
    assert [e.position for e in again] != [e.position for e in kept]


async def test_a_follower_goes_on_live_after_a_replay_from_memory(
    stub: SessionServiceStub, table: SessionServiceStub, app_name: str
) -> None:
    session_id = await new_session(stub, app_name)
    await add(stub, session_id, [f"before {n}" for n in range(4)])
    await replay(stub, session_id)
    before = sent_from_memory()
    call = stub.StreamEvents(pb.StreamEventsRequest(session_id=session_id, follow=True))
    received: list[pb.StreamEventsResponse] = []
    async with asyncio.timeout(60):
        while not any(r.caught_up for r in received):
            received.append(await call.read())
        assert sent_from_memory() - before == 4
        await add(stub, session_id, ["live"])
        while sum(len(r.events) for r in received) < 5:
            received.append(await call.read())
    call.cancel()
    events = [e for r in received for e in r.events]
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events == await all_events(table, session_id)


async def test_memory_is_bounded_and_zero_turns_it_off(
    database_url: str, table: SessionServiceStub, app_name: str
) -> None:
    async with extra_server(database_url, replay_cache="4KiB") as small:
        short, long = await new_session(small, app_name), await new_session(small, app_name)
        await add(small, short, ["a", "b"])
        await add(small, long, [f"event {n} " + "x" * 100 for n in range(40)])
        for session_id in (short, long, short, long):
            assert await replay(small, session_id) == await all_events(table, session_id)
        before = sent_from_memory()
        await replay(small, long)
        assert sent_from_memory() == before  # past a quarter of 4 KiB: not kept
        await replay(small, short)
        assert sent_from_memory() - before == 2
    async with extra_server(database_url, replay_cache="0") as off:
        before = sent_from_memory()
        for _ in range(2):
            assert await replay(off, short) == await all_events(table, short)
        assert sent_from_memory() == before


async def test_replays_on_two_replicas_match_the_table_through_any_mix_of_changes(
    stub: SessionServiceStub, table: SessionServiceStub, database_url: str, app_name: str
) -> None:
    """Appends, removals of every kind, purges and re-creations under the same id, through
    either replica in a seeded random order; after each, a replay from a random start and of
    random types, and ListEvents pages, on either replica are what the table holds."""
    rng = random.Random(1103)
    before = sent_from_memory()
    async with extra_server(database_url, replay_cache="64KiB") as other:
        replicas = (stub, other)
        sessions = [await new_session(stub, app_name) for _ in range(3)]
        for step in range(120):
            through = rng.choice(replicas)
            session_id = rng.choice(sessions)
            last_seq = (
                await through.GetSession(pb.GetSessionRequest(session_id=session_id))
            ).last_seq
            action = rng.random()
            if action < 0.55:
                await add(through, session_id, [f"s{step} e{n}" for n in range(rng.randint(1, 40))])
            elif action < 0.85 and last_seq:
                first = rng.randint(1, last_seq)
                which = rng.choice(
                    [
                        {"newest": True},
                        {"seqs": pb.SeqRange(first=first, last=rng.randint(first, last_seq))},
                        {"all": True},
                    ]
                )
                await through.RemoveEvents(pb.RemoveEventsRequest(session_id=session_id, **which))
            elif action < 0.9:
                created = (
                    await through.GetSession(pb.GetSessionRequest(session_id=session_id))
                ).create_time
                await through.DeleteSession(
                    pb.DeleteSessionRequest(session_id=session_id, purge=True)
                )
                await through.CreateSession(
                    pb.CreateSessionRequest(
                        session_id=session_id, app_name=app_name, user_id="u", create_time=created
                    )
                )
            for reader in replicas:
                after = rng.choice([0, 0, rng.randint(0, max(last_seq, 1))])
                types = rng.choice([[], ["note"], ["tool_call", "events_removed"]])
                expected = await all_events(table, session_id, after_seq=after, types=types)
                assert await replay(reader, session_id, after_seq=after, types=types) == expected
                assert await replay(reader, session_id) == await all_events(table, session_id)
                filters = rng.choice([{}, {}, *PAGE_FILTERS])
                await same_pages(reader, table, session_id, rng.choice([3, 1000]), **filters)
    assert sent_from_memory() - before > 1000  # the mix went through the kept replays


async def test_replays_at_once_keep_each_event_once(
    stub: SessionServiceStub, table: SessionServiceStub, app_name: str
) -> None:
    """Replays that find the same kept part and the same new events at the same time: one of
    them keeps the new events, and later replays send each event once."""
    session_id = await new_session(stub, app_name)
    await add(stub, session_id, ["first"])
    await replay(stub, session_id)
    for turn in range(5):
        await add(stub, session_id, [f"turn {turn} {n}" for n in range(3)])
        at_once = await asyncio.gather(*(replay(stub, session_id) for _ in range(4)))
        expected = await all_events(table, session_id)
        assert all(events == expected for events in at_once)
        assert await replay(stub, session_id) == expected


# What ListEvents pages may ask for, from a kept replay: bounds on seqs, types, either order.
PAGE_FILTERS: list[dict[str, Any]] = [
    {},
    {"descending": True},
    {"after_seq": 4},
    {"before_seq": 20},
    {"after_seq": 3, "before_seq": 33, "descending": True},
    {"types": ["tool_call"]},
    {"types": ["note"], "descending": True, "after_seq": 2},
    {"after_seq": 34},
    {"after_seq": 35},
    {"before_seq": 1},
]


async def test_list_events_pages_come_from_memory_and_match_the_table(
    stub: SessionServiceStub, table: SessionServiceStub, app_name: str
) -> None:
    for page_size in (2, 7, 1000):
        for filters in PAGE_FILTERS:
            # Kept through 30 of 35: pages within it from memory, the rest from the table.
            session_id = await new_session(stub, app_name)
            await add(stub, session_id, [f"first {n}" for n in range(30)])
            await replay(stub, session_id)
            await add(stub, session_id, [f"then {n}" for n in range(5)])
            await same_pages(stub, table, session_id, page_size, **filters)
            await replay(stub, session_id)  # now kept whole
            before = sent_from_memory()
            sent = await same_pages(stub, table, session_id, page_size, **filters)
            # Every event of every page from memory.
            assert sent_from_memory() - before == sum(len(page.events) for page in sent)
    # Other filters read the table.
    before = sent_from_memory()
    await same_pages(stub, table, session_id, 10, author="someone else")
    await same_pages(stub, table, session_id, 10, invocation_id="inv-1", types=["note"])
    assert sent_from_memory() == before


async def test_list_events_pages_of_the_whole_history_are_kept_for_the_next_read(
    stub: SessionServiceStub, table: SessionServiceStub, app_name: str
) -> None:
    session_id = await new_session(stub, app_name)
    for part in range(5):
        await add(stub, session_id, [f"part {part} event {n}" for n in range(500)])
    before = sent_from_memory()
    first = await same_pages(stub, table, session_id, 1000)
    assert len(first) == 3
    # Each page after the first starts with the one event its predecessor read beyond itself.
    assert sent_from_memory() - before == 2
    before = sent_from_memory()
    await same_pages(stub, table, session_id, 1000)
    assert sent_from_memory() - before == 2500
    await add(stub, session_id, [f"later {n}" for n in range(10)], state_delta={"k": 2})
    before = sent_from_memory()
    await same_pages(stub, table, session_id, 1000)
    assert sent_from_memory() - before == 2500  # the ten new ones from the table, then kept
    before = sent_from_memory()
    events = [e for page in await same_pages(stub, table, session_id, 1000) for e in page.events]
    assert sent_from_memory() - before == 2510
    # A replay finds what the pages kept.
    before = sent_from_memory()
    assert await replay(stub, session_id) == events
    assert sent_from_memory() - before == 2510


async def test_list_events_pages_never_send_what_was_taken_back_or_another_session_held(
    stub: SessionServiceStub, table: SessionServiceStub, replica: SessionServiceStub,
    app_name: str,
) -> None:  # fmt: skip
    session_id = await new_session(stub, app_name)
    await add(stub, session_id, ["one", "two", "the zanzibar secret", "four", "five"])
    await same_pages(stub, table, session_id, 2)
    await replica.RemoveEvents(
        pb.RemoveEventsRequest(session_id=session_id, seqs=pb.SeqRange(first=3, last=3))
    )
    for filters in PAGE_FILTERS:
        sent = await same_pages(stub, table, session_id, 2, **filters)
        assert "the zanzibar secret" not in [e.content.text for p in sent for e in p.events]
    # Purged on the other replica: gone here too, then another session under the same id.
    created = (await stub.GetSession(pb.GetSessionRequest(session_id=session_id))).create_time
    await replica.DeleteSession(pb.DeleteSessionRequest(session_id=session_id, purge=True))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListEvents(pb.ListEventsRequest(session_id=session_id))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    await replica.CreateSession(
        pb.CreateSessionRequest(
            session_id=session_id, app_name=app_name, user_id="u", create_time=created
        )
    )
    await add(replica, session_id, ["new a", "new b", "new c", "new d", "new e", "new f"])
    for filters in PAGE_FILTERS:
        sent = await same_pages(stub, table, session_id, 2, **filters)
        assert all(e.content.text.startswith("new") for p in sent for e in p.events)


async def test_reads_at_once_of_a_session_that_grew_send_each_event_once(
    stub: SessionServiceStub, table: SessionServiceStub, app_name: str
) -> None:
    """Replays and pages that find the same kept part while the session grew: each sends
    every event once, whichever of them keeps the new ones."""
    session_id = await new_session(stub, app_name)
    await add(stub, session_id, [f"first {n}" for n in range(50)])
    await replay(stub, session_id)
    for turn in range(5):
        await add(stub, session_id, [f"turn {turn} {n}" for n in range(20)])
        expected = await all_events(table, session_id)
        replays = [replay(stub, session_id) for _ in range(3)]
        paged = [all_events(stub, session_id) for _ in range(3)]
        assert await asyncio.gather(*replays, *paged) == [expected] * 6


async def test_only_a_read_from_the_first_event_starts_a_kept_replay(
    stub: SessionServiceStub, table: SessionServiceStub, app_name: str
) -> None:
    session_id = await new_session(stub, app_name)
    await same_pages(stub, table, session_id, 5)  # nothing yet, from the start
    await add(stub, session_id, [f"event {n}" for n in range(12)])
    await same_pages(stub, table, session_id, 5, after_seq=6)
    await replay(stub, session_id, after_seq=3)
    for filters in PAGE_FILTERS:
        await same_pages(stub, table, session_id, 5, **filters)
    assert await replay(stub, session_id) == await all_events(table, session_id)
