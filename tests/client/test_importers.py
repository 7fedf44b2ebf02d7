"""Importing what other stores wrote with their own code: OpenAI Agents' SQLiteSession and
Google ADK's DatabaseSessionService."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from agents import SQLiteSession
from google.adk.events import Event as AdkEvent
from google.adk.events import EventActions
from google.adk.sessions import DatabaseSessionService
from google.genai import types

from agentstore.app import AgentStoreServer
from agentstore.client import AsyncClient, Event
from agentstore.client.adk_events import (
    adk_event_from_event,
    adk_event_from_message,
    event_from_adk_event,
    session_key,
)
from agentstore.client.openai_agents_items import (
    event_from_item,
    item_from_event,
    item_from_message,
)
from tests.support import run_agentstore

CONVERSATION: list[dict[str, Any]] = [
    {"role": "user", "content": "What is the refund policy?"},
    {
        "type": "function_call",
        "call_id": "call_1",
        "name": "lookup_policy",
        "arguments": '{"topic": "refunds", "limit": 3}',
    },
    {"type": "function_call_output", "call_id": "call_1", "output": "Refunds within 30 days."},
    {
        "type": "message",
        "role": "assistant",
        "id": "msg_1",
        "status": "completed",
        "content": [{"type": "output_text", "text": "Within 30 days.", "annotations": []}],
    },
]


async def test_an_openai_agents_sqlite_file_is_imported_item_for_item(
    server: AgentStoreServer, client: AsyncClient, app_name: str, tmp_path: Path
) -> None:
    database = tmp_path / "agents.db"
    first = SQLiteSession(f"{app_name}-conv-1", database)
    second = SQLiteSession(f"{app_name}-conv-2", database)
    unusable = SQLiteSession("not a valid id!", database)
    try:
        await first.add_items(CONVERSATION)
        await second.add_items(CONVERSATION[:1])
        await unusable.add_items(CONVERSATION[:1])
        assert len(await first.get_items()) == 4
    finally:
        for session in (first, second, unusable):
            session.close()

    target = f"127.0.0.1:{server.port}"
    arguments = ("--target", target, "import", "--from", "openai-agents", str(database))
    code, _, err = await run_agentstore(*arguments, "--app", app_name, "--user", "u1")
    assert code == 1, err  # one session could not be brought over, and the command says so
    assert b"sessions: 2 created, 0 existing; events: 5 appended" in err
    assert b"'not a valid id!': not a valid agentstore id" in err

    events = [event async for event in client.list_events(f"{app_name}-conv-1")]
    assert [item_from_event(event) for event in events] == CONVERSATION
    assert [(e.type, e.author) for e in events] == [
        ("message", "user"),
        ("function_call", "assistant"),
        ("function_call_output", "tool"),
        ("message", "assistant"),
    ]
    assert [e.content.text for e in events if e.content] == [
        "What is the refund policy?",
        'lookup_policy({"topic": "refunds", "limit": 3})',
        "Refunds within 30 days.",
        "Within 30 days.",
    ]
    session = await client.get_session(f"{app_name}-conv-1")
    assert (session.app_name, session.user_id, session.preview) == (
        app_name,
        "u1",
        "What is the refund policy?",
    )
    hits = [hit async for hit in client.search("refunds", app_name=app_name)]
    # "refunds" finds "refund" too (English stemming), in the question, the call and its output.
    assert {hit.event.seq for hit in hits if hit.event.session_id == session.id} == {1, 2, 3}

    code, _, err = await run_agentstore(*arguments, "--app", app_name, "--user", "u1")
    assert b"sessions: 0 created, 2 existing; events: 0 appended, 5 already there" in err


async def test_adk_database_tables_are_imported_event_for_event(
    server: AgentStoreServer, client: AsyncClient, app_name: str, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'adk.db'}"
    service = DatabaseSessionService(db_url=url)
    other_app = f"{app_name}-other"
    try:
        # ADK keys sessions by (app, user, id): two apps may each have a session "s1".
        first = await service.create_session(
            app_name=app_name,
            user_id="u1",
            session_id="s1",
            state={"lang": "en", "app:motto": "be kind", "user:tier": "gold"},
        )
        await service.create_session(app_name=other_app, user_id="u1", session_id="s1")
        for event in adk_conversation():
            await service.append_event(first, event)
        stored = await service.get_session(app_name=app_name, user_id="u1", session_id="s1")
        assert stored is not None
    finally:
        await service.close()

    arguments = ("--target", f"127.0.0.1:{server.port}", "import", "--from", "adk", url)
    code, _, err = await run_agentstore(*arguments)
    assert code == 1, err  # a key ADK keeps set to None cannot be kept, and is reported
    assert b"sessions: 2 created, 0 existing; events: 4 appended" in err
    assert b"state keys set to None not kept: gone" in err
    assert (await client.get_state(app_name)).state == {"greeting": "hi", "motto": "be kind"}
    assert (await client.get_state(app_name, "u1")).state == {"tier": "gold"}

    key = session_key(app_name, "u1", "s1")
    assert key != session_key(other_app, "u1", "s1")
    session = await client.get_session(key)
    assert (session.app_name, session.user_id) == (app_name, "u1")
    assert session.metadata == {"adk_session_id": "s1"}
    assert session.state == {"lang": "en", "topic": "refunds"}
    events = [event async for event in client.list_events(key)]
    assert [adk_event_from_event(event) for event in events] == stored.events
    assert [(e.type, e.author, e.invocation_id) for e in events] == [
        ("message", "user", "inv-1"),
        ("function_call", "support", "inv-1"),
        ("function_response", "support", "inv-1"),
        ("message", "support", "inv-1"),
    ]
    assert events[0].create_time == datetime.fromtimestamp(stored.events[0].timestamp, UTC)
    assert session.preview == "Where is my refund?"

    code, _, err = await run_agentstore(*arguments)
    assert b"sessions: 0 created, 2 existing; events: 0 appended, 4 already there" in err


def adk_conversation() -> list[AdkEvent]:
    def said(author: str, role: str, *parts: types.Part, **fields: Any) -> AdkEvent:
        return AdkEvent(
            invocation_id="inv-1",
            author=author,
            content=types.Content(role=role, parts=list(parts)),
            **fields,
        )

    call = types.FunctionCall(id="call-1", name="find_order", args={"order": 42})
    return [
        said("user", "user", types.Part(text="Where is my refund?")),
        said("support", "model", types.Part(function_call=call)),
        said(
            "support",
            "user",
            types.Part(
                function_response=types.FunctionResponse(
                    id="call-1", name="find_order", response={"status": "refunded"}
                )
            ),
        ),
        said(
            "support",
            "model",
            types.Part(text="It was refunded yesterday."),
            actions=EventActions(
                state_delta={"topic": "refunds", "app:greeting": "hi", "gone": None}
            ),
        ),
    ]


async def test_the_adapters_read_a_message_as_they_read_its_event(
    client: AsyncClient, app_name: str
) -> None:
    # The adapters load whole histories from the messages as they arrive (converting only
    # their payload), and everything else from Events: both must give the same.
    adk_event = AdkEvent(
        invocation_id="inv-1",
        author="agent",
        content=types.Content(role="model", parts=[types.Part(text="Within 30 days.")]),
        actions=EventActions(state_delta={"topic": "refunds"}),
    )
    session = await client.create_session(app_name)
    await client.append(
        session.id,
        [event_from_item(item) for item in CONVERSATION]
        + [event_from_adk_event(adk_event), Event(type="note", data={"item": "not an item"})],
    )
    events = [event async for event in client.stream_events(session_id=session.id)]
    messages = [m async for b in client.stream_event_batches(session.id) for m in b]
    assert [item_from_message(m) for m in messages[:4]] == CONVERSATION
    assert [item_from_message(m) for m in messages[:4]] == [item_from_event(e) for e in events[:4]]
    assert adk_event_from_message(messages[4]) == adk_event_from_event(events[4]) == adk_event
    for reader in (item_from_message, adk_event_from_message):
        with pytest.raises(ValueError, match=f"event {events[5].event_id} holds no"):
            reader(messages[5])
