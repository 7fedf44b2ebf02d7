"""An event read from the encoding it kept at append (events.encoded) is the event built from
its columns: the same messages from replay, live, ListEvents pages and a feed."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from agentstore.v1 import event_pb2
from agentstore.v1 import session_service_pb2 as pb
from agentstore.v1.session_service_pb2_grpc import SessionServiceStub
from tests.e2e.events_support import append, event, message, struct

# Field 99 as a varint of 1: a field this server does not know, as from a newer client.
UNKNOWN_FIELD = b"\x98\x06\x01"


def varied_events() -> list[list[event_pb2.Event]]:
    """Append messages of events using every field, with the awkward cases: empty objects,
    an empty content and actions, fields only the server sets, no event id."""
    nested = event(
        "Grüße aus 東京 🌸",
        event_id="nested",
        author="user",
        role="user",
        data={"a": {"b": [1, 2.5, "x", None, True, {}, []]}, "empty": {}, "n": -3, "big": 1e20},
        invocation_id="inv-1",
        agent_id="planner",
        branch="root.planner",
    )
    nested.metadata.CopyFrom(struct({"trace": "abc", "tokens": 12}))
    deltas = event("state", event_id="deltas", state_delta={"k": "v", "gone": None})
    deltas.actions.app_state_delta.CopyFrom(struct({}))
    deltas.actions.user_state_delta.CopyFrom(struct({"x": 1}))
    empty_content = event_pb2.Event(type="note", event_id="empty-content")
    empty_content.content.SetInParent()
    empty_content.actions.SetInParent()
    set_by_server = event(
        "the server sets these", event_id="set-by-server", seq=77, position=78,
        session_id="elsewhere", resume_token="not-mine",
    )  # fmt: skip
    unknown = event_pb2.Event.FromString(
        event("from a newer client", event_id="unknown").SerializeToString() + UNKNOWN_FIELD
    )
    tool = event_pb2.Event(type="tool_start", author="search_tool")
    tool.data.CopyFrom(struct({"tool_name": "search", "arguments": {"q": "refund"}}))
    return [
        [nested],
        [deltas, empty_content, set_by_server],  # one message: they share their time
        [unknown],
        [tool, event("taken back", event_id="doomed")],  # the tool's id: made by the server
    ]


async def read_everything(stub: SessionServiceStub, session_id: str, app_name: str) -> Any:
    replay = [
        e
        async for r in stub.StreamEvents(pb.StreamEventsRequest(session_id=session_id))
        for e in r.events
    ]
    pages: list[event_pb2.Event] = []
    token = ""
    while True:
        page = await stub.ListEvents(
            pb.ListEventsRequest(session_id=session_id, page_size=2, page_token=token)
        )
        pages.extend(page.events)
        if not (token := page.next_page_token):
            break
    feed = [
        e
        async for r in stub.StreamEvents(pb.StreamEventsRequest(app_name=app_name))
        for e in r.events
    ]
    return replay, pages, feed


async def test_events_read_from_their_kept_encoding_equal_those_built_from_their_columns(
    stub: SessionServiceStub, app_name: str, database_url: str
) -> None:
    session = await stub.CreateSession(pb.CreateSessionRequest(app_name=app_name, user_id="u1"))
    call = stub.StreamEvents(pb.StreamEventsRequest(session_id=session.id, follow=True))
    responses = aiter(call)
    assert (await anext(responses)).caught_up
    messages = varied_events()
    for events in messages:
        await append(stub, message(session.id, events))
    # A removal notice is written by the server itself, with nothing kept: read from columns.
    await stub.RemoveEvents(pb.RemoveEventsRequest(session_id=session.id, newest=True))
    live: list[event_pb2.Event] = []
    while len(live) < 8:
        live.extend((await asyncio.wait_for(anext(responses), 30)).events)
    call.cancel()

    kept = await read_everything(stub, session.id, app_name)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as db:
        cleared = await db.execute(
            "UPDATE events SET encoded = NULL WHERE session_id = %s AND encoded IS NOT NULL",
            (session.id,),
        )
        assert cleared.rowcount == 6  # all appended but the one removed
    built = await read_everything(stub, session.id, app_name)

    replay, pages, feed = kept
    assert [e.seq for e in replay] == [1, 2, 3, 4, 5, 6, 8]
    assert replay == built[0]
    assert pages == built[1] == replay
    assert feed == built[2]
    assert [e.resume_token for e in feed] == [e.resume_token for e in built[2]]
    assert all(e.resume_token for e in feed)
    assert [e for e in live if e.event_id != "doomed"] == replay
    by_id = {e.event_id: e for e in replay}
    assert not by_id["empty-content"].HasField("content")
    assert by_id["set-by-server"].session_id == session.id
    assert by_id["set-by-server"].seq == 4
    assert by_id["set-by-server"].resume_token == ""
    assert by_id["deltas"].actions.HasField("app_state_delta")
    assert by_id["nested"].data["empty"] == struct({})
    assert UNKNOWN_FIELD not in by_id["unknown"].SerializeToString()
