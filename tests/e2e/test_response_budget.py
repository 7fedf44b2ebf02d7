"""Every response fits a default client (4 MiB): histories of large events replay, stream
live, list and search, in parts, with nothing lost or repeated."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from agentstore.v1 import session_service_pb2 as pb
from agentstore.v1.session_service_pb2_grpc import SessionServiceStub
from tests.conftest import extra_server
from tests.e2e.events_support import append, event, message, struct

DEFAULT_CLIENT_LIMIT = 4 * 1024 * 1024
NEAR_DEFAULT_EVENT_LIMIT = 900 * 1024  # the default per-event limit is 1 MiB
NEAR_MAX_EVENT_LIMIT = int(2.9 * 1024 * 1024)  # max_event_bytes may be set up to 3 MiB


def big_event(index: int, size: int, word: str = "bulky") -> object:
    return event(f"{word} {index} " + "x" * size, event_id=f"big-{index}")


@pytest.fixture(scope="module")
async def large_server(database_url: str) -> AsyncIterator[SessionServiceStub]:
    async with extra_server(database_url, max_event_bytes="3MiB") as stub:
        yield stub


async def test_a_replay_of_large_events_comes_in_parts_a_default_client_accepts(
    stub: SessionServiceStub, app_name: str
) -> None:
    session = await stub.CreateSession(pb.CreateSessionRequest(app_name=app_name))
    for index in range(5):  # 4.5 MiB in all: one message would be refused
        await append(stub, message(session.id, [big_event(index, NEAR_DEFAULT_EVENT_LIMIT)]))
    request = pb.StreamEventsRequest(session_id=session.id)
    responses = [response async for response in stub.StreamEvents(request)]
    seqs = [e.seq for r in responses for e in r.events]
    assert seqs == [1, 2, 3, 4, 5]
    assert max(r.ByteSize() for r in responses) < DEFAULT_CLIENT_LIMIT
    feed = [
        e.seq
        async for r in stub.StreamEvents(pb.StreamEventsRequest(app_name=app_name))
        for e in r.events
    ]
    assert feed == [1, 2, 3, 4, 5]


async def test_a_live_follower_receives_a_batch_of_large_events_in_parts(
    large_server: SessionServiceStub, app_name: str
) -> None:
    session = await large_server.CreateSession(pb.CreateSessionRequest(app_name=app_name))
    call = large_server.StreamEvents(pb.StreamEventsRequest(session_id=session.id, follow=True))
    responses = aiter(call)
    assert (await anext(responses)).caught_up
    # Two near-limit events in one message: one live batch of 5.8 MiB.
    await append(
        large_server,
        message(session.id, [big_event(i, NEAR_MAX_EVENT_LIMIT) for i in range(2)]),
    )
    received: list[int] = []
    while len(received) < 2:
        response = await asyncio.wait_for(anext(responses), 30)
        assert response.ByteSize() < DEFAULT_CLIENT_LIMIT
        received.extend(e.seq for e in response.events)
    call.cancel()
    assert received == [1, 2]


async def test_list_and_search_pages_are_cut_to_fit_and_page_on_without_gaps(
    large_server: SessionServiceStub, app_name: str
) -> None:
    session = await large_server.CreateSession(pb.CreateSessionRequest(app_name=app_name))
    for index in range(4):
        await append(
            large_server, message(session.id, [big_event(index, NEAR_MAX_EVENT_LIMIT, "heavy")])
        )
    seqs: list[int] = []
    token = ""
    while True:
        page = await large_server.ListEvents(
            pb.ListEventsRequest(session_id=session.id, page_token=token)
        )
        assert page.ByteSize() < DEFAULT_CLIENT_LIMIT
        seqs.extend(e.seq for e in page.events)
        if not (token := page.next_page_token):
            break
    assert seqs == [1, 2, 3, 4]
    hits: list[int] = []
    while True:
        found = await large_server.Search(
            pb.SearchRequest(app_name=app_name, query="heavy", page_token=token)
        )
        assert found.ByteSize() < DEFAULT_CLIENT_LIMIT
        hits.extend(hit.event.seq for hit in found.hits)
        if not (token := found.next_page_token):
            break
    assert sorted(hits) == [1, 2, 3, 4]


async def test_a_list_of_sessions_with_large_states_is_cut_to_fit(
    stub: SessionServiceStub, app_name: str
) -> None:
    state = struct({"notes": "y" * (250 * 1024)})  # just under the 256 KiB state limit
    created = [
        (await stub.CreateSession(pb.CreateSessionRequest(app_name=app_name, state=state))).id
        for _ in range(20)  # 5 MiB of state in all
    ]
    listed: list[str] = []
    token = ""
    while True:
        page = await stub.ListSessions(
            pb.ListSessionsRequest(app_name=app_name, page_size=100, page_token=token)
        )
        assert page.ByteSize() < DEFAULT_CLIENT_LIMIT
        listed.extend(s.id for s in page.sessions)
        if not (token := page.next_page_token):
            break
    assert sorted(listed) == sorted(created)
    assert len(listed) == len(set(listed))


async def test_max_event_bytes_cannot_be_set_past_what_a_client_reads(database_url: str) -> None:
    with pytest.raises(ValueError, match="max_event_bytes"):
        async with extra_server(database_url, max_event_bytes="4MiB"):
            pass
