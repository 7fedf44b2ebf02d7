"""Importing what other stores wrote, with their own code: OpenAI Agents' SQLiteSession."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agents import SQLiteSession

from agentstore.app import AgentStoreServer
from agentstore.client import AsyncClient
from agentstore.client.openai_agents_items import item_from_event
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
