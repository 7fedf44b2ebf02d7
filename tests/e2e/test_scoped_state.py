"""State shared beyond one session: an app's and a user's, changed by UpdateState and by
appended events in the append's own transaction."""

from __future__ import annotations

import asyncio

import pytest

from agentstore.app import AgentStoreServer
from agentstore.client import AsyncClient, Conflict, Event, EventActions, InvalidArgument


def changing(**deltas: dict[str, object]) -> Event:
    return Event(type="note", actions=EventActions(**deltas))  # type: ignore[arg-type]


async def test_sessions_of_one_user_share_its_state_and_every_session_its_apps(
    client: AsyncClient, app_name: str
) -> None:
    mine = await client.create_session(app_name, user_id="ann")
    also_mine = await client.create_session(app_name, user_id="ann")
    theirs = await client.create_session(app_name, user_id="bob")
    await client.append(
        mine.id,
        changing(
            state_delta={"draft": 1},
            user_state_delta={"language": "fr"},
            app_state_delta={"banner": "sale"},
        ),
    )
    seen = await client.get_session(also_mine.id, view="scoped")
    assert (seen.state, seen.user_state, seen.app_state) == (
        {},
        {"language": "fr"},
        {"banner": "sale"},
    )
    other = await client.get_session(theirs.id, view="scoped")
    assert (other.user_state, other.app_state) == ({}, {"banner": "sale"})
    plain = await client.get_session(mine.id)
    assert (plain.state, plain.app_state, plain.user_state) == ({"draft": 1}, None, None)

    # The event keeps its deltas, as it was appended.
    (event,) = [e async for e in client.list_events(mine.id)]
    assert event.actions == EventActions(
        state_delta={"draft": 1},
        user_state_delta={"language": "fr"},
        app_state_delta={"banner": "sale"},
    )


async def test_get_and_update_state_with_versions(client: AsyncClient, app_name: str) -> None:
    fresh = await client.get_state(app_name, "nobody")
    assert (fresh.state, fresh.version, fresh.update_time) == ({}, 0, None)
    first = await client.update_state(app_name, state_delta={"a": 1, "b": 2}, expected_version=0)
    assert (first.state, first.version, first.user_id) == ({"a": 1, "b": 2}, 1, "")
    second = await client.update_state(app_name, state_delta={"a": None, "c": 3})
    assert (second.state, second.version) == ({"b": 2, "c": 3}, 2)
    with pytest.raises(Conflict) as stale:
        await client.update_state(app_name, state_delta={"x": 1}, expected_version=1)
    assert stale.value.version == 2
    session = await client.create_session(app_name, user_id="u")
    await client.append(session.id, changing(app_state_delta={"d": 4}))
    after = await client.get_state(app_name)
    assert (after.state, after.version) == ({"b": 2, "c": 3, "d": 4}, 3)
    with pytest.raises(InvalidArgument) as bad:
        await client.get_state("not an app!")
    assert [v.field for v in bad.value.violations] == ["app_name"]


async def test_a_resent_event_does_not_change_state_again(
    client: AsyncClient, app_name: str
) -> None:
    session = await client.create_session(app_name, user_id="u")
    event = Event(type="note", event_id="once", actions=EventActions(user_state_delta={"n": 1}))
    await client.append(session.id, event)
    await client.update_state(app_name, "u", state_delta={"n": 2})
    resent = await client.append(session.id, event)
    assert (resent.appended, resent.duplicates) == (0, 1)
    assert (await client.get_state(app_name, "u")).state == {"n": 2}


async def test_a_user_state_over_the_limit_writes_nothing(
    client: AsyncClient, app_name: str
) -> None:
    session = await client.create_session(app_name, user_id="u")
    with pytest.raises(InvalidArgument) as too_big:
        await client.append(
            session.id,
            [
                changing(state_delta={"ok": True}),
                changing(user_state_delta={"big": "x" * 300_000}),
            ],
        )
    assert [v.field for v in too_big.value.violations] == ["events.actions.user_state_delta"]
    assert (await client.get_session(session.id)).last_seq == 0
    assert (await client.get_state(app_name, "u")).version == 0


async def test_many_sessions_of_one_user_append_at_once_without_deadlock(
    client: AsyncClient, server: AgentStoreServer, app_name: str
) -> None:
    sessions = [await client.create_session(app_name, user_id="busy") for _ in range(8)]
    rounds = 15

    async def writer(index: int, session_id: str) -> None:
        # A client (and so a stream, and transactions) of its own: the appends of different
        # sessions run at once and take the same user and app rows.
        async with AsyncClient(f"127.0.0.1:{server.port}") as own:
            for step in range(rounds):
                await own.append(
                    session_id,
                    changing(
                        user_state_delta={f"writer{index}": step},
                        app_state_delta={f"writer{index}": step},
                    ),
                )

    await asyncio.gather(*(writer(i, s.id) for i, s in enumerate(sessions)))
    user = await client.get_state(app_name, "busy")
    app = await client.get_state(app_name)
    expected = {f"writer{i}": rounds - 1 for i in range(8)}
    assert (user.state, user.version) == (expected, 8 * rounds)
    assert (app.state, app.version) == (expected, 8 * rounds)
