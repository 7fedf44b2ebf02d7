"""Export, then import into fresh databases: every session and event comes back as it was
(ids, seqs, times, state), a second import adds nothing, and a cut-off import resumes."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from agentstore.app import AgentStoreServer
from agentstore.client import AsyncClient
from agentstore.client.plain import plain
from agentstore.client.transfer import export_sessions
from tests.conftest import server_settings
from tests.support import run_agentstore


@contextlib.asynccontextmanager
async def fresh_store(
    create_database: Callable[[], Awaitable[str]],
) -> AsyncIterator[tuple[str, AsyncClient]]:
    """A server on a new, empty database: its address and a client of it."""
    running = AgentStoreServer(server_settings(await create_database()))
    await running.start()
    try:
        target = f"127.0.0.1:{running.port}"
        async with AsyncClient(target) as client:
            yield target, client
    finally:
        await running.stop()


async def history(client: AsyncClient, app_name: str) -> list[Any]:
    """Every session of the app with its events, as plain values, leaving out what depends
    on the store rather than on the data (positions, versions, update times)."""
    sessions = []
    async for listed in client.list_sessions(app_name, view="full"):
        session = plain(listed)
        for local in ("version", "update_time"):
            session.pop(local)
        events = [plain(event) async for event in client.list_events(listed.id)]
        for event in events:
            event.pop("position")
        sessions.append((session, events))
    return sessions


async def seed(client: AsyncClient, app_name: str) -> None:
    first = await client.create_session(
        app_name, user_id="ann", metadata={"title": "billing"}, ttl=timedelta(days=30)
    )
    await client.append(
        first.id,
        [
            {"type": "message", "author": "user", "content": {"role": "user", "text": "Hi"}},
            {"type": "llm_stream", "data": {"delta": "Hel"}},
            {"type": "tool_start", "data": {"tool_name": "lookup", "arguments": {"id": 7}}},
            {"type": "note", "actions": {"state_delta": {"step": 1, "gone": True}}},
        ],
    )
    await client.update_session(first.id, state_delta={"gone": None, "by_update": "yes"})
    await client.append(
        first.id,
        {"type": "note", "actions": {"app_state_delta": {"motd": "hi"},
                                     "user_state_delta": {"tier": "gold", "tmp": 1}}},
    )  # fmt: skip
    await client.update_state(app_name, "ann", state_delta={"tmp": None, "set": "directly"})
    await client.append(first.id, [{"type": "note", "metadata": {"trace": "t1"}}] * 3)
    second = await client.create_session(app_name, user_id="bob", status="completed")
    for start in (0, 600):
        await client.append(
            second.id,
            [
                {"type": "message", "content": {"role": "assistant", "text": f"n{n}"}}
                for n in range(start, start + 600)
            ],
        )


async def test_export_then_import_gives_back_every_session_and_event(
    client: AsyncClient,
    server: AgentStoreServer,
    create_database: Callable[[], Awaitable[str]],
    app_name: str,
    tmp_path: Path,
) -> None:
    await seed(client, app_name)
    original = await history(client, app_name)
    exported = tmp_path / "export.jsonl"
    code, _, err = await run_agentstore(
        "--target", f"127.0.0.1:{server.port}", "export", "--app", app_name, "-o", str(exported)
    )
    assert code == 0, err
    assert b"exported 2 sessions, 1208 events" in err
    header = json.loads(exported.read_text().splitlines()[0])
    assert (header["format"], header["version"]) == ("agentstore-export", 1)

    async with fresh_store(create_database) as (target, fresh):
        code, _, err = await run_agentstore("--target", target, "import", str(exported))
        assert code == 0, err
        assert b"sessions: 2 created, 0 existing; events: 1208 appended, 0 already there" in err
        assert await history(fresh, app_name) == original
        for user in ("", "ann", "bob"):
            assert (await fresh.get_state(app_name, user)).state == (
                await client.get_state(app_name, user)
            ).state
        assert (await fresh.get_state(app_name, "ann")).state == {"tier": "gold", "set": "directly"}

        code, _, err = await run_agentstore("--target", target, "import", str(exported))
        assert code == 0, err
        assert b"sessions: 0 created, 2 existing; events: 0 appended, 1208 already there" in err
        assert await history(fresh, app_name) == original


async def test_an_import_cut_short_resumes_where_it_stopped(
    client: AsyncClient,
    create_database: Callable[[], Awaitable[str]],
    app_name: str,
    tmp_path: Path,
) -> None:
    await seed(client, app_name)
    original = await history(client, app_name)
    exported = tmp_path / "export.jsonl"
    with exported.open("w") as out:
        await export_sessions(client, out, app_name=app_name)
    lines = exported.read_text().splitlines(keepends=True)
    cut = tmp_path / "cut.jsonl"
    # Sessions are exported newest first, after the states: the cut keeps bob's session line
    # and some of its 1,200 events, and leaves out the rest and ann's session with its 8.
    cut.write_text("".join(lines[: len(lines) - 700]))

    async with fresh_store(create_database) as (target, fresh):
        code, _, err = await run_agentstore("--target", target, "import", str(cut))
        assert code == 0, err
        code, _, err = await run_agentstore("--target", target, "import", str(exported))
        assert code == 0, err
        assert b"sessions: 1 created, 1 existing; events: 699 appended, 509 already there" in err
        assert await history(fresh, app_name) == original


async def test_a_file_that_is_not_an_export_is_refused(
    server: AgentStoreServer, tmp_path: Path
) -> None:
    bogus = tmp_path / "bogus.jsonl"
    bogus.write_text('{"hello": 1}\n')
    code, _, err = await run_agentstore(
        "--target", f"127.0.0.1:{server.port}", "import", str(bogus)
    )
    assert code != 0
    assert b"not an agentstore-export file" in err
    assert b"Traceback" not in err
