"""Replays from memory: a session replayed again is sent from what its replica kept, and never
sends what was taken back, or what another session under the same id held."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

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


async def new_session(stub: SessionServiceStub, app_name: str) -> str:
    return (await stub.CreateSession(pb.CreateSessionRequest(app_name=app_name, user_id="u"))).id


async def add(stub: SessionServiceStub, session_id: str, texts: list[str], **fields: Any) -> None:
    events = [
        event(text, type="note" if n % 3 else "tool_call", data={"n": n, "text": text}, **fields)
        for n, text in enumerate(texts)
    ]
    await append(stub, message(session_id, events))


@pytest.fixture
async def replica(database_url: str) -> AsyncIterator[SessionServiceStub]:
    """A second server on the run's database, with a replay memory of its own."""
    async with extra_server(database_url) as stub:
        yield stub


async def test_a_session_replayed_again_comes_from_memory_and_the_table_after_it(
    stub: SessionServiceStub, app_name: str
) -> None:
    session_id = await new_session(stub, app_name)
    await add(stub, session_id, [f"first {n}" for n in range(30)])
    first = await replay(stub, session_id)
    assert first == await all_events(stub, session_id)
    await add(stub, session_id, [f"then {n}" for n in range(5)], state_delta={"k": 1})
    before = sent_from_memory()
    second = await replay(stub, session_id)
    assert sent_from_memory() - before == 30
    assert second == await all_events(stub, session_id)
    assert second[:30] == first
    assert [e.seq for e in second] == list(range(1, 36))
    # A later start and a type filter take their part of what was kept.
    before = sent_from_memory()
    part = await replay(stub, session_id, after_seq=10, types=["tool_call"])
    assert part == await all_events(stub, session_id, after_seq=10, types=["tool_call"])
    assert sent_from_memory() - before == len([e for e in second[10:] if e.type == "tool_call"])


async def test_events_removed_through_another_replica_are_never_sent_from_memory(
    stub: SessionServiceStub, replica: SessionServiceStub, app_name: str
) -> None:
    session_id = await new_session(stub, app_name)
    await add(stub, session_id, ["one", "two", "the zanzibar secret", "four", "five"])
    assert "the zanzibar secret" in [e.content.text for e in await replay(stub, session_id)]
    await replica.RemoveEvents(
        pb.RemoveEventsRequest(session_id=session_id, seqs=pb.SeqRange(first=3, last=3))
    )
    again = await replay(stub, session_id)
    assert [e.content.text for e in again if e.content.text] == ["one", "two", "four", "five"]
    assert again == await all_events(stub, session_id)
    assert [(e.seq, e.type) for e in again][-1] == (6, "events_removed")


async def test_a_session_purged_and_imported_again_elsewhere_is_read_anew(
    stub: SessionServiceStub, replica: SessionServiceStub, app_name: str
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
    assert again == await all_events(stub, session_id)
    assert [e.position for e in again] != [e.position for e in kept]


async def test_a_follower_goes_on_live_after_a_replay_from_memory(
    stub: SessionServiceStub, app_name: str
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
    assert events == await all_events(stub, session_id)


async def test_memory_is_bounded_and_zero_turns_it_off(database_url: str, app_name: str) -> None:
    async with extra_server(database_url, replay_cache="4KiB") as small:
        short, long = await new_session(small, app_name), await new_session(small, app_name)
        await add(small, short, ["a", "b"])
        await add(small, long, [f"event {n} " + "x" * 100 for n in range(40)])
        for session_id in (short, long, short, long):
            assert await replay(small, session_id) == await all_events(small, session_id)
        before = sent_from_memory()
        await replay(small, long)
        assert sent_from_memory() == before  # past a quarter of 4 KiB: not kept
        await replay(small, short)
        assert sent_from_memory() - before == 2
    async with extra_server(database_url, replay_cache="0") as off:
        before = sent_from_memory()
        for _ in range(2):
            assert await replay(off, short) == await all_events(off, short)
        assert sent_from_memory() == before
