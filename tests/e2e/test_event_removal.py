"""RemoveEvents: taking events back without reusing a seq or breaking a follower."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from agentstore.app import AgentStoreServer
from agentstore.client import AsyncClient, Conflict, Event, InvalidArgument, NotFound
from agentstore.client.event_data import EventsRemovedData


def said(role: str, text: str, **fields: object) -> dict[str, object]:
    return {"type": "message", "author": role, "content": {"role": role, "text": text}, **fields}


async def texts(client: AsyncClient, session_id: str) -> list[str]:
    return [e.content.text async for e in client.list_events(session_id) if e.content]


async def test_popping_the_newest_returns_it_and_it_vanishes_everywhere(
    client: AsyncClient, app_name: str, database_url: str
) -> None:
    session = await client.create_session(app_name)
    await client.append(
        session.id,
        [said("user", "first question"), said("assistant", "the zanzibar secret answer")],
    )
    popped = await client.remove_events(session.id, newest=True)
    assert popped.removed is not None
    assert (popped.removed.seq, popped.removed.content.text) == (  # type: ignore[union-attr]
        2,
        "the zanzibar secret answer",
    )
    assert (popped.ranges, popped.count, popped.notice_seq, popped.last_seq) == (
        ((2, 2),),
        1,
        3,
        3,
    )
    events = [e async for e in client.list_events(session.id)]
    assert [(e.seq, e.type) for e in events] == [(1, "message"), (3, "events_removed")]
    notice = events[1].typed_data()
    assert isinstance(notice, EventsRemovedData)
    assert (notice.seqs(), notice.count) == ([2], 1)
    assert [hit async for hit in client.search("zanzibar", app_name=app_name)] == []
    stats = await client.get_session_stats(session.id)
    assert (stats.event_count, stats.events_by_type) == (2, {"message": 1, "events_removed": 1})
    assert stats.events_by_role == {"user": 1}
    assert stats.text_chars == len("first question")
    # The text is gone from the table, not only hidden.
    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        cursor = await connection.execute(
            "SELECT count(*) FROM events WHERE content_text LIKE %s", ("%zanzibar%",)
        )
        assert await cursor.fetchone() == (0,)
    # Seqs are never reused.
    assert (await client.append(session.id, said("user", "next"))).seqs == (4,)


async def test_ranges_invocations_and_all(client: AsyncClient, app_name: str) -> None:
    session = await client.create_session(app_name)
    for invocation in ("a", "b", "c"):
        await client.append(
            session.id,
            [said("user", f"{invocation}1", invocation_id=invocation),
             said("assistant", f"{invocation}2", invocation_id=invocation)],
        )  # fmt: skip
    removed = await client.remove_events(session.id, seqs=(2, 3))
    assert (removed.ranges, removed.count) == (((2, 3),), 2)
    assert await texts(client, session.id) == ["a1", "b2", "c1", "c2"]
    rewound = await client.remove_events(session.id, from_invocation_id="c")
    assert (rewound.ranges, rewound.count) == (((5, 6),), 2)
    assert await texts(client, session.id) == ["a1", "b2"]
    everything = await client.remove_events(session.id, all=True)
    assert (everything.ranges, everything.count) == (((1, 1), (4, 4)), 2)
    assert await texts(client, session.id) == []
    assert (await client.get_session(session.id)).event_count == 3  # the three notices
    nothing = await client.remove_events(session.id, all=True)
    assert (nothing.count, nothing.notice_seq) == (0, 0)
    assert (await client.get_session(session.id)).last_seq == 9


async def test_the_preview_follows_what_remains(client: AsyncClient, app_name: str) -> None:
    session = await client.create_session(app_name)
    await client.append(session.id, [said("user", "my card number is 1234"), said("user", "hi")])
    await client.remove_events(session.id, seqs=(1, 1))
    assert (await client.get_session(session.id)).preview == "hi"


async def test_bad_removals_get_clear_errors(client: AsyncClient, app_name: str) -> None:
    session = await client.create_session(app_name)
    await client.append(session.id, said("user", "x"))
    with pytest.raises(Conflict) as stale:
        await client.remove_events(session.id, newest=True, expected_last_seq=0)
    assert stale.value.last_seq == 1
    with pytest.raises(InvalidArgument) as backwards:
        await client.remove_events(session.id, seqs=(3, 2))
    assert [v.field for v in backwards.value.violations] == ["seqs"]
    with pytest.raises(NotFound):
        await client.remove_events(f"{app_name}-missing", all=True)
    with pytest.raises(InvalidArgument) as reserved:
        await client.append(session.id, {"type": "events_removed", "data": {"ranges": []}})
    assert [v.field for v in reserved.value.violations] == ["events[0].type"]
    assert await texts(client, session.id) == ["x"]


async def test_pops_racing_a_writer_take_each_event_once(
    client: AsyncClient, server: AgentStoreServer, app_name: str
) -> None:
    session = await client.create_session(app_name)
    await client.append(session.id, [said("user", f"old {n}") for n in range(20)])
    target = f"127.0.0.1:{server.port}"

    async def pop() -> Event | None:
        async with AsyncClient(target) as own:
            return (await own.remove_events(session.id, newest=True)).removed

    async def write() -> None:
        async with AsyncClient(target) as own:
            for n in range(10):
                await own.append(session.id, said("user", f"new {n}"))

    results = await asyncio.gather(*(pop() for _ in range(15)), write())
    popped = [event for event in results[:15] if event is not None]
    assert len(popped) == 15
    assert len({event.seq for event in popped}) == 15  # none taken twice
    remaining = await texts(client, session.id)
    gone = {event.content.text for event in popped if event.content}
    assert len(remaining) == 30 - 15
    assert gone.isdisjoint(remaining)
    stats = await client.get_session_stats(session.id)
    assert stats.events_by_type == {"message": 15, "events_removed": 15}


async def test_a_follower_is_told_of_removals_in_order(client: AsyncClient, app_name: str) -> None:
    session = await client.create_session(app_name)
    await client.append(session.id, [said("user", "one"), said("user", "two")])
    following = client.follow(session_id=session.id)
    seen = [await anext(following), await anext(following)]  # type: ignore[arg-type]
    await client.remove_events(session.id, newest=True)
    await client.append(session.id, said("user", "three"))
    seen += [await asyncio.wait_for(anext(following), 20) for _ in range(2)]  # type: ignore[arg-type]
    await following.aclose()  # type: ignore[attr-defined]
    assert [(e.seq, e.type) for e in seen] == [
        (1, "message"),
        (2, "message"),
        (3, "events_removed"),
        (4, "message"),
    ]
    assert seen[2].data == {"ranges": [[2, 2]], "count": 1}
