"""Client, the synchronous twin: the same calls without asyncio, from a plain thread."""

from __future__ import annotations

import asyncio

import pytest

from agentstore.app import AgentStoreServer
from agentstore.client import Client, NotFound


def use_the_sync_client(target: str, app_name: str) -> None:
    with Client(target) as client:
        session = client.create_session(app_name, state={"a": 1})
        result = client.append(session.id, [{"type": "message", "content": {"text": "one"}}])
        assert result.seqs == (1,)
        pending = [
            client.append_async(session.id, {"type": "message", "content": {"text": f"n{n}"}})
            for n in range(10)
        ]
        assert [future.result().seqs for future in pending] == [(n,) for n in range(2, 12)]
        assert [e.seq for e in client.list_events(session.id, page_size=3)] == list(range(1, 12))
        # Leaving a live follow early closes its stream.
        for event in client.follow(session_id=session.id):
            if event.seq == 11:
                break
        assert [s.id for s in client.list_sessions(app_name)] == [session.id]
        assert client.get_session_stats(session.id).event_count == 11
        with pytest.raises(NotFound):
            client.get_session(f"{app_name}-missing")


async def test_the_sync_client_from_a_thread(server: AgentStoreServer, app_name: str) -> None:
    await asyncio.to_thread(use_the_sync_client, f"127.0.0.1:{server.port}", app_name)
