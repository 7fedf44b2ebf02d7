"""agentstore next to the stores agent teams would otherwise use, on one PostgreSQL, one run.

    python -m bench.peers --database-url URL [--appends 1000] [--history 5000]

The peers run in venvs of their own, never agentstore's dependencies (bench/peer_adk.py,
bench/peer_openai_agents.py); make them once:

    python3 -m venv ~/.cache/agentstore-bench/adk
    ~/.cache/agentstore-bench/adk/bin/pip install 'google-adk[db]' 'psycopg[binary]'
    python3 -m venv ~/.cache/agentstore-bench/openai-agents
    ~/.cache/agentstore-bench/openai-agents/bin/pip install \
        'openai-agents[sqlalchemy]' 'psycopg[binary]'

For each store: `--appends` awaited single-item appends to one session (what an adapter does:
append, await, go on), their p50 and rate; and the median time to load a `--history`-item
session whole (agentstore: StreamEvents replay; ADK: get_session; OpenAI Agents: get_items).
agentstore sends a session replayed again from memory (`--replay-cache`); its loads are also
measured, taking turns with those, on a second server that reads every one from the table
(`--replay-cache 0`), as a replay on another replica or after a restart does.
Targets (issue 11): awaited appends at least 2x both peers; history at least as fast as OpenAI
Agents and 10x ADK. Then each framework's agentstore adapter (issue 14), measured by the same
peer script in this venv against a server on its own scratch database: ADK's append_event and
get_session, OpenAI Agents' add_items and get_items, with the same targets.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import grpc

from agentstore.v1 import event_pb2
from agentstore.v1 import session_service_pb2 as pb
from agentstore.v1.session_service_pb2_grpc import SessionServiceStub
from bench.common import ROOT, analyze, parser, running_server, scratch_database
from bench.latency import Pipe, timed
from bench.peer_support import TEXT, figures

VENVS = Path.home() / ".cache" / "agentstore-bench"
PEERS = {
    "Google ADK DatabaseSessionService": ("adk", "bench/peer_adk.py"),
    "OpenAI Agents SQLAlchemySession": ("openai-agents", "bench/peer_openai_agents.py"),
}
# agentstore's adapter for each peer's framework, measured by the peer's own script.
ADAPTERS = {
    "Google ADK DatabaseSessionService": "agentstore via its ADK session service",
    "OpenAI Agents SQLAlchemySession": "agentstore via its OpenAI Agents session",
}
LOADS = 20


def one_event(number: int) -> event_pb2.Event:
    return event_pb2.Event(
        type="message",
        author="assistant",
        content=event_pb2.Content(role="assistant", text=f"{number} {TEXT}"),
    )


async def agentstore(
    database_url: str, appends: int, history: int
) -> tuple[dict[str, float], float]:
    """The figures of agentstore, and the median load of the server without a replay memory."""
    async with (
        running_server(database_url) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        stub = SessionServiceStub(channel)
        session = await stub.CreateSession(pb.CreateSessionRequest(app_name="bench"))
        pipe = Pipe(stub.AppendStream)

        async def append(number: int) -> None:
            await pipe.round_trip(
                pb.AppendStreamRequest(session_id=session.id, events=[one_event(number)])
            )

        durations = await timed(appends, append)
        pipe.close()
        long = await stub.CreateSession(pb.CreateSessionRequest(app_name="bench"))
        batches = [
            pb.AppendEventsRequest(
                session_id=long.id,
                events=[one_event(n) for n in range(start, min(history, start + 1000))],
            )
            for start in range(0, history, 1000)
        ]
        await stub.AppendEvents(iter(batches))
        await analyze(database_url)
        # Started only now: while another replica listens, the appends above would each have
        # rung it with a NOTIFY (docs/operations.md, Replicas).
        async with (
            running_server(database_url, "--replay-cache", "0") as uncached,
            grpc.aio.insecure_channel(uncached.address) as uncached_channel,
        ):
            table_stub = SessionServiceStub(uncached_channel)
            loads: list[float] = []
            table_loads: list[float] = []
            for _ in range(LOADS + 2):
                for through, times in ((stub, loads), (table_stub, table_loads)):
                    started = time.perf_counter()
                    count = 0
                    request = pb.StreamEventsRequest(session_id=long.id)
                    async for response in through.StreamEvents(request):
                        count += len(response.events)
                    times.append(time.perf_counter() - started)
                    assert count == history, count
    return figures(appends, durations, loads[2:]), statistics.median(table_loads[2:]) * 1000


async def peer(
    venv: str,
    script: str,
    database_url: str,
    appends: int,
    history: int,
    agentstore_target: str | None = None,
    agentstore_database_url: str | None = None,
) -> dict:  # type: ignore[type-arg]
    """A peer script's figures: the framework's own store in the peer's venv, or, with
    `agentstore_target`, agentstore's adapter for that framework measured by the same script
    in this venv (`agentstore_database_url` is that server's database, analyzed before the
    loads as the peer's own is)."""
    python = Path(sys.executable) if agentstore_target else VENVS / venv / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"{python} is missing: make the peers' venvs first (see --help)")
    target = []
    if agentstore_target and agentstore_database_url:
        target = [
            "--agentstore-target", agentstore_target, "--analyze-url", agentstore_database_url
        ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        str(python), str(ROOT / script), "--database-url", database_url,
        "--appends", str(appends), "--history", str(history), *target,
        stdout=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    stdout, _ = await process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"{script} failed with exit code {process.returncode}")
    result: dict = json.loads(stdout.decode().strip().splitlines()[-1])  # type: ignore[type-arg]
    return result


async def main() -> None:
    options = parser(__doc__ or "")
    options.add_argument("--appends", type=int, default=1000)
    options.add_argument("--history", type=int, default=5000)
    arguments = options.parse_args()
    if arguments.database_url is None:
        sys.exit("give --database-url: the peers need a PostgreSQL server they can reach")
    appends, history = arguments.appends, arguments.history
    results = {}
    async with scratch_database(arguments.database_url) as database_url:
        results["agentstore (AppendStream, StreamEvents)"], table_load_ms = await agentstore(
            database_url, appends, history
        )
    for name, (venv, script) in PEERS.items():
        results[name] = await peer(venv, script, arguments.database_url, appends, history)
    async with (
        scratch_database(arguments.database_url) as database_url,
        running_server(database_url) as server,
    ):
        for name, (venv, script) in PEERS.items():
            results[ADAPTERS[name]] = await peer(
                venv, script, arguments.database_url, appends, history, server.address,
                database_url,
            )  # fmt: skip
    ours = results["agentstore (AppendStream, StreamEvents)"]
    print(f"{appends:,} awaited single-item appends; loading a {history:,}-item session\n")
    print(f"{'store':44} {'appends/s':>10} {'p50 ms':>7} {'load ms':>8}")
    for name, measured in results.items():
        print(
            f"{name:44} {measured['appends_per_second']:10,.0f} {measured['append_p50_ms']:7.2f}"
            f" {measured['load_ms']:8.1f}"
        )
    print(f"{'agentstore, every replay from the table':44} {'':>10} {'':>7} {table_load_ms:8.1f}")
    print("\nagentstore against each peer (above 1: agentstore is faster)")
    for name in PEERS:
        measured = results[name]
        append_ratio = ours["appends_per_second"] / measured["appends_per_second"]
        load_ratio = measured["load_ms"] / ours["load_ms"]
        table_ratio = measured["load_ms"] / table_load_ms
        print(
            f"{name:44} appends {append_ratio:5.2f}x   history load {load_ratio:6.2f}x"
            f" ({table_ratio:.2f}x from the table)"
        )
    print("\neach framework's adapter on agentstore against the framework's own store")
    for name, adapter in ADAPTERS.items():
        on_agentstore, own_store = results[adapter], results[name]
        append_ratio = on_agentstore["appends_per_second"] / own_store["appends_per_second"]
        load_ratio = own_store["load_ms"] / on_agentstore["load_ms"]
        print(f"{adapter:44} appends {append_ratio:5.2f}x   history load {load_ratio:6.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
