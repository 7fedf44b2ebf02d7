"""Every method of AsyncClient through a real server and database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from agentstore.client import (
    AlreadyExists,
    AsyncClient,
    Conflict,
    Content,
    Event,
    EventActions,
    InvalidArgument,
    NotFound,
    SessionStatus,
)
from agentstore.client.event_data import LLMStreamData


def said(role: str, text: str, **fields: object) -> dict[str, object]:
    return {"type": "message", "author": role, "content": {"role": role, "text": text}, **fields}


async def test_sessions_round_trip_with_plain_values(client: AsyncClient, app_name: str) -> None:
    session = await client.create_session(
        app_name,
        session_id=f"{app_name}-s1",
        user_id="u1",
        state={"count": 3, "nested": {"ok": True}, "ratio": 0.5},
        metadata={"title": "first"},
        ttl=timedelta(hours=1),
        status="completed",
    )
    assert session.id == f"{app_name}-s1"
    assert session.state == {"count": 3, "nested": {"ok": True}, "ratio": 0.5}
    assert isinstance(session.state["count"], int)
    assert session.status is SessionStatus.COMPLETED
    assert session.expire_time is not None
    assert timedelta(minutes=59) < session.expire_time - datetime.now(UTC) <= timedelta(hours=1)
    fetched = await client.get_session(session.id)
    assert fetched == session

    with pytest.raises(AlreadyExists) as taken:
        await client.create_session(app_name, session_id=session.id)
    assert taken.value.reason == "SESSION_ALREADY_EXISTS"

    updated = await client.update_session(
        session.id, state_delta={"count": 4, "nested": None}, expected_version=session.version
    )
    assert updated.state == {"count": 4, "ratio": 0.5}
    assert updated.version == session.version + 1
    with pytest.raises(Conflict) as stale:
        await client.update_session(
            session.id, metadata={"title": "x"}, expected_version=session.version
        )
    assert stale.value.version == updated.version

    deleted = await client.delete_session(session.id)
    assert deleted is not None
    assert deleted.delete_time is not None
    with pytest.raises(NotFound) as gone:
        await client.get_session(session.id)
    assert gone.value.metadata == {"session_id": session.id}
    restored = await client.undelete_session(session.id)
    assert restored.delete_time is None
    assert await client.delete_session(session.id, purge=True) is None


async def test_list_sessions_walks_every_page(client: AsyncClient, app_name: str) -> None:
    made = [
        (await client.create_session(app_name, user_id="pager", metadata={"n": n})).id
        for n in range(5)
    ]
    await client.create_session(app_name, user_id="other")
    listed = [s async for s in client.list_sessions(app_name, user_id="pager", page_size=2)]
    assert [s.id for s in listed] == list(reversed(made))
    assert all(s.state == {} for s in listed)  # the basic view leaves the state out
    assert await client.delete_sessions(app_name, user_id="pager") == 5
    assert [s.id async for s in client.list_sessions(app_name)] != []
    assert [s.id async for s in client.list_sessions(app_name, user_id="pager")] == []


async def test_append_returns_durable_seqs_and_counts_duplicates(
    client: AsyncClient, app_name: str
) -> None:
    session = await client.create_session(app_name)
    first = await client.append(session.id, [said("user", "hi"), said("assistant", "hello")])
    assert (first.appended, first.duplicates, first.seqs, first.last_seq) == (2, 0, (1, 2), 2)

    again = Event(type="message", event_id="fixed-1", content=Content("user", "once"))
    stored = await client.append(session.id, again)
    resent = await client.append(session.id, [again, said("user", "new")])
    assert stored.seqs == (3,)
    assert (resent.appended, resent.duplicates, resent.seqs) == (1, 1, (3, 4))

    with pytest.raises(Conflict) as stale:
        await client.append(session.id, said("user", "late"), expected_last_seq=2)
    assert stale.value.last_seq == 4
    guarded = await client.append(session.id, said("user", "on time"), expected_last_seq=4)
    assert guarded.seqs == (5,)

    state = await client.append(
        session.id, Event(type="note", actions=EventActions(state_delta={"step": 2}))
    )
    assert (await client.get_session(session.id)).state == {"step": 2}
    assert state.version == (await client.get_session(session.id)).version


async def test_append_errors_name_what_is_wrong(client: AsyncClient, app_name: str) -> None:
    with pytest.raises(NotFound):
        await client.append(f"{app_name}-missing", said("user", "x"))
    session = await client.create_session(app_name)
    with pytest.raises(InvalidArgument) as bad:
        await client.append(session.id, [said("user", "ok"), {"type": ""}])
    assert [v.field for v in bad.value.violations] == ["events[1].type"]
    with pytest.raises(TypeError, match="unknown event field"):
        await client.append(session.id, {"type": "x", "colour": "red"})
    # The failed request wrote nothing and the stream goes on.
    assert (await client.append(session.id, said("user", "after"))).seqs == (1,)


async def test_a_pipelined_writer_keeps_many_appends_in_flight(
    client: AsyncClient, app_name: str
) -> None:
    session = await client.create_session(app_name)
    async with client.append_stream() as writer:
        futures = [await writer.append(session.id, said("user", f"n{n}")) for n in range(50)]
    assert [f.result().seqs for f in futures] == [(n,) for n in range(1, 51)]
    texts = [e.content.text async for e in client.list_events(session.id) if e.content]
    assert texts == [f"n{n}" for n in range(50)]


async def test_append_events_is_the_client_streaming_rpc(
    client: AsyncClient, app_name: str
) -> None:
    one = await client.create_session(app_name)
    two = await client.create_session(app_name)
    last = await client.append_events(
        [(one.id, [said("user", "a")], None), (two.id, [said("user", "b")] * 2, 0)]
    )
    # Each event without an id gets its own: the same dict twice is two events.
    assert last == {one.id: 1, two.id: 2}


async def test_events_pages_filters_stream_and_messages(client: AsyncClient, app_name: str) -> None:
    session = await client.create_session(app_name)
    await client.append(
        session.id,
        [
            said("user", "what is the weather"),
            {"type": "llm_stream", "data": {"delta": "It is "}},
            {"type": "llm_stream", "data": {"delta": "sunny"}},
            said("assistant", "It is sunny"),
            {"type": "tool_start", "data": {"tool_name": "forecast"}},
        ],
    )
    paged = [e.seq async for e in client.list_events(session.id, page_size=2)]
    assert paged == [1, 2, 3, 4, 5]
    newest = [e.seq async for e in client.list_events(session.id, descending=True, after_seq=2)]
    assert newest == [5, 4, 3]
    streams = [e async for e in client.list_events(session.id, types=["llm_stream"])]
    typed = streams[0].typed_data()
    assert isinstance(typed, LLMStreamData)
    assert typed.delta == "It is "
    replayed = [e.seq async for e in client.stream_events(session_id=session.id, after_seq=3)]
    assert replayed == [4, 5]
    assert await client.messages(session.id) == [
        {"role": "user", "content": "what is the weather"},
        {"role": "assistant", "content": "It is sunny"},
    ]
    stats = await client.get_session_stats(session.id)
    assert stats.event_count == 5
    assert stats.events_by_type == {"message": 2, "llm_stream": 2, "tool_start": 1}
    store = await client.get_store_stats(app_name)
    assert (store.total_sessions, store.total_events) == (1, 5)


async def test_search_finds_ranked_hits_with_snippets(client: AsyncClient, app_name: str) -> None:
    session = await client.create_session(app_name)
    await client.append(
        session.id,
        [said("user", "the invoice for March is late"), said("assistant", "unrelated words")],
    )
    hits = [hit async for hit in client.search("invoice", app_name=app_name)]
    assert [hit.event.seq for hit in hits] == [1]
    assert "<b>invoice</b>" in hits[0].snippet
    assert hits[0].score > 0


async def test_follow_replays_then_delivers_live_events(client: AsyncClient, app_name: str) -> None:
    session = await client.create_session(app_name)
    await client.append(session.id, said("user", "before"))
    received: list[str] = []
    following = client.follow(session_id=session.id)

    async def read(count: int) -> None:
        async for event in following:
            received.append(event.content.text if event.content else "")
            if len(received) == count:
                return

    reader = asyncio.create_task(read(3))
    await client.append(session.id, said("user", "live 1"))
    await client.append(session.id, said("user", "live 2"))
    await asyncio.wait_for(reader, 20)
    await following.aclose()  # type: ignore[attr-defined]
    assert received == ["before", "live 1", "live 2"]


async def test_follow_a_feed_from_now_and_resume_by_token(
    client: AsyncClient, app_name: str
) -> None:
    old = await client.create_session(app_name, user_id="u")
    await client.append(old.id, said("user", "history"))
    feed = client.follow(app_name=app_name, skip_replay=True)
    first = asyncio.create_task(anext(feed))  # type: ignore[arg-type]
    # The feed is live only once the replay is skipped: wait for the first event it delivers.
    other = await client.create_session(app_name, user_id="u")
    while not first.done():
        await client.append(other.id, said("user", "new"))
        await asyncio.wait({first}, timeout=1)
    event = first.result()
    assert event.session_id == other.id
    assert event.resume_token
    await feed.aclose()  # type: ignore[attr-defined]

    # Resuming after that event's token delivers exactly what committed after it, in order.
    newest = (await client.get_session(other.id)).last_seq
    await client.append(old.id, said("user", "after the token"))
    expected = [(other.id, seq) for seq in range(event.seq + 1, newest + 1)] + [(old.id, 2)]
    resumed = client.follow(app_name=app_name, resume_token=event.resume_token)
    got = [
        (e.session_id, e.seq)
        for e in [
            await asyncio.wait_for(anext(resumed), 20)  # type: ignore[arg-type]
            for _ in expected
        ]
    ]
    await resumed.aclose()  # type: ignore[attr-defined]
    assert got == expected


async def test_listed_sessions_carry_their_summary(client: AsyncClient, app_name: str) -> None:
    quiet = await client.create_session(app_name)
    talked = await client.create_session(app_name)
    await client.append(talked.id, [said("assistant", "Hello, how can I help?")])
    await client.append(
        talked.id, [said("user", "  My   invoice\n is late "), said("user", "second question")]
    )
    await client.append(talked.id, said("user", "x" * 300))
    listed = {s.id: s async for s in client.list_sessions(app_name)}
    assert (listed[quiet.id].preview, listed[quiet.id].last_event_time) == ("", None)
    summary = listed[talked.id]
    assert summary.preview == "My invoice is late"
    assert summary.event_count == 4
    assert summary.last_event_time is not None
    assert summary.last_event_time >= (await client.get_session(talked.id)).create_time  # type: ignore[operator]
    long = await client.create_session(app_name)
    await client.append(long.id, said("user", "y" * 300))
    assert (await client.get_session(long.id)).preview == "y" * 200
