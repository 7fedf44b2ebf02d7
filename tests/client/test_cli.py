"""The `agentstore` command as a subprocess against the run's server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

from agentstore.app import AgentStoreServer
from agentstore.client import AsyncClient
from tests.support import run_agentstore

# `python -m agentstore` with Ctrl-C's default action, as a terminal gives it. A run of this
# suite started in the background by a shell inherits SIGINT ignored (what a shell does to a
# background job), and so would the command: it would rightly not stop on SIGINT, and the
# test of Ctrl-C hung on every such run.
AS_AT_A_TERMINAL = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler);"
    " runpy.run_module('agentstore', run_name='__main__', alter_sys=True)"
)


def said(role: str, text: str) -> dict[str, object]:
    return {"type": "message", "author": role, "content": {"role": role, "text": text}}


async def test_sessions_events_stats_and_search_as_json_lines(
    server: AgentStoreServer, client: AsyncClient, app_name: str
) -> None:
    target = f"127.0.0.1:{server.port}"
    session = await client.create_session(app_name, user_id="ann", state={"k": "v"})
    await client.append(session.id, [said("user", "find the invoice"), said("assistant", "ok")])

    code, out, err = await run_agentstore(
        "--target", target, "--json", "sessions", "list", "--app", app_name
    )
    assert (code, err) == (0, b"")
    (listed,) = [json.loads(line) for line in out.splitlines()]
    assert (listed["id"], listed["user_id"], listed["event_count"]) == (session.id, "ann", 2)

    code, out, _ = await run_agentstore("--target", target, "--json", "events", session.id)
    events = [json.loads(line) for line in out.splitlines()]
    assert [(e["seq"], e["content"]["text"]) for e in events] == [
        (1, "find the invoice"),
        (2, "ok"),
    ]

    code, out, _ = await run_agentstore(
        "--target", target, "--json", "search", "invoice", "--app", app_name
    )
    (hit,) = [json.loads(line) for line in out.splitlines()]
    assert hit["event"]["seq"] == 1
    assert "<b>invoice</b>" in hit["snippet"]

    code, out, _ = await run_agentstore("--target", target, "--json", "stats", session.id)
    assert json.loads(out)["events_by_role"] == {"user": 1, "assistant": 1}

    code, out, _ = await run_agentstore("--target", target, "sessions", "get", session.id)
    assert code == 0
    assert "id:" in out.decode()
    assert '{"k": "v"}' in out.decode()

    code, out, _ = await run_agentstore("--target", target, "sessions", "delete", session.id)
    assert code == 0
    code, out, err = await run_agentstore("--target", target, "sessions", "get", session.id)
    assert code == 1
    assert b"NOT_FOUND" in err
    assert b"Traceback" not in err


async def test_bad_input_is_reported_with_its_field(server: AgentStoreServer) -> None:
    code, _, err = await run_agentstore(
        "--target", f"127.0.0.1:{server.port}", "sessions", "list", "--app", "bad app!"
    )
    assert code == 1
    assert b"INVALID_ARGUMENT" in err
    assert b"app_name" in err
    assert b"Traceback" not in err


async def test_a_reader_that_stops_early_ends_the_command_quietly(
    server: AgentStoreServer, client: AsyncClient, app_name: str
) -> None:
    # More output than a pipe holds, so the command is still writing when its reader goes.
    session = await client.create_session(app_name)
    await client.append(session.id, [said("user", f"{n} " + "x" * 400) for n in range(400)])
    read_end, write_end = os.pipe()
    events = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentstore", "--target", f"127.0.0.1:{server.port}",
        "--json", "events", session.id,
        stdout=write_end, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:  # as `| head -1` does
        # In a thread: the server answering the command runs on this event loop.
        first = await asyncio.to_thread(reader.readline)
    _, err = await asyncio.wait_for(events.communicate(), 60)
    assert json.loads(first)["seq"] == 1
    assert (events.returncode, err) == (128 + signal.SIGPIPE, b"")

    # A reader gone before anything was written: the output fits the buffer, and only its
    # last flush finds the pipe closed (`agentstore stats | true`).
    read_end, write_end = os.pipe()
    os.close(read_end)
    stats = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentstore", "--target", f"127.0.0.1:{server.port}", "stats",
        stdout=write_end, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    os.close(write_end)
    _, err = await asyncio.wait_for(stats.communicate(), 60)
    assert (stats.returncode, err) == (128 + signal.SIGPIPE, b"")


async def test_tail_prints_what_another_process_appends_and_stops_on_ctrl_c(
    server: AgentStoreServer, client: AsyncClient, app_name: str
) -> None:
    session = await client.create_session(app_name)
    await client.append(session.id, said("user", "before the tail"))
    tail = await asyncio.create_subprocess_exec(
        sys.executable, "-c", AS_AT_A_TERMINAL, "--target", f"127.0.0.1:{server.port}",
        "tail", session.id, "--replay",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert tail.stdout is not None
    assert tail.stderr is not None
    try:
        first = await asyncio.wait_for(tail.stdout.readline(), 30)
        assert b"#1" in first
        assert b"before the tail" in first
        await client.append(
            session.id,
            [
                {"type": "llm_stream", "data": {"delta": "It is "}},
                {"type": "llm_stream", "data": {"delta": "sunny"}},
                said("assistant", "It is sunny"),
            ],
        )
        streamed = await asyncio.wait_for(tail.stdout.readline(), 30)
        whole = await asyncio.wait_for(tail.stdout.readline(), 30)
        assert streamed == b"It is sunny\n"
        assert b"#4" in whole
        assert b"assistant" in whole
        tail.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(tail.wait(), 30)
    finally:
        if tail.returncode is None:
            tail.kill()
    assert code == 130
    assert b"Traceback" not in await tail.stderr.read()


async def test_server_commands_are_found_through_the_server_package() -> None:
    code, out, _ = await run_agentstore("migrate", "--help")
    assert code == 0
    assert b"--database-url" in out
