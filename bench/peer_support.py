"""What both peer scripts (bench/peer_adk.py, bench/peer_openai_agents.py) need: their flags,
a scratch database for the run, and the JSON line bench/peers.py reads. Plain psycopg only: it
runs in the peers' own venvs, where agentstore is not installed."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import uuid
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

__all__ = ["TEXT", "Analyze", "figures", "run_peer"]

# Analyzes the database of the store measured; bench.common.analyze says why.
Analyze = Callable[[], Awaitable[None]]

TEXT = (
    "The agent looked up the customer's last three invoices, compared the totals with the "
    "plan, and found that the March invoice charged the annual rate twice; it drafts a refund."
)


def figures(appends: int, durations: list[float], loads: list[float]) -> dict[str, float]:
    """The figures bench/peers.py prints, from each append's and each load's seconds."""
    return {
        "append_p50_ms": statistics.median(durations) * 1000,
        "appends_per_second": appends / sum(durations),
        "load_ms": statistics.median(loads) * 1000,
    }


def run_peer(
    description: str,
    measure: Callable[[str, int, int, str | None, Analyze], Awaitable[dict[str, float]]],
) -> None:
    """Parse the flags, run `measure(sqlalchemy_url, appends, history, agentstore_target,
    analyze)` on a scratch database of the server given, drop it, and print the figures as
    one JSON line. With --agentstore-target the script measures agentstore's adapter for its
    framework instead of the framework's own store (run then in agentstore's venv), and
    `analyze` analyzes --analyze-url, that server's database; the scratch database
    otherwise. `measure` calls it between writing its history and loading it, as
    bench.common.analyze does for agentstore."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--appends", type=int, default=1000)
    parser.add_argument("--history", type=int, default=5000)
    parser.add_argument("--agentstore-target")
    parser.add_argument("--analyze-url")
    arguments = parser.parse_args()
    name = f"peer_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(arguments.database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    parts = urlsplit(arguments.database_url)
    url = urlunsplit(parts._replace(scheme="postgresql+psycopg", path=f"/{name}"))
    analyzed = arguments.analyze_url or urlunsplit(parts._replace(path=f"/{name}"))

    async def analyze() -> None:
        connection = await psycopg.AsyncConnection.connect(analyzed, autocommit=True)
        async with connection:
            await connection.execute("ANALYZE")

    try:
        result = asyncio.run(
            measure(url, arguments.appends, arguments.history, arguments.agentstore_target, analyze)
        )
    finally:
        with psycopg.connect(arguments.database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    print(json.dumps(result))
