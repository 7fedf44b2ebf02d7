"""OpenAI Agents' own SQLAlchemySession, measured for bench/peers.py. Runs in a venv of its own
that has openai-agents[sqlalchemy] (never a dependency of agentstore); prints one JSON object.

    VENV/bin/python bench/peer_openai_agents.py --database-url URL [--appends 1000] [--history 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession
from psycopg import sql
from sqlalchemy.ext.asyncio import create_async_engine

TEXT = (
    "The agent looked up the customer's last three invoices, compared the totals with the "
    "plan, and found that the March invoice charged the annual rate twice; it drafts a refund."
)
LOADS = 20


def item(number: int) -> dict[str, Any]:
    return {"role": "assistant", "content": f"{number} {TEXT}"}


async def measure(url: str, appends: int, history: int) -> dict[str, float]:
    engine = create_async_engine(url)
    session = SQLAlchemySession(f"s-{uuid.uuid4().hex}", engine=engine, create_tables=True)
    for number in range(20):  # warm up
        await session.add_items([item(number)])
    durations = []
    for number in range(appends):
        started = time.perf_counter()
        await session.add_items([item(number)])
        durations.append(time.perf_counter() - started)
    long = SQLAlchemySession(f"s-{uuid.uuid4().hex}", engine=engine)
    for start in range(0, history, 500):
        await long.add_items([item(n) for n in range(start, min(history, start + 500))])
    loads = []
    for _ in range(LOADS + 2):
        started = time.perf_counter()
        items = await long.get_items()
        loads.append(time.perf_counter() - started)
        assert len(items) == history
    await engine.dispose()
    return {
        "append_p50_ms": statistics.median(durations) * 1000,
        "appends_per_second": appends / sum(durations),
        "load_ms": statistics.median(loads[2:]) * 1000,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--appends", type=int, default=1000)
    parser.add_argument("--history", type=int, default=5000)
    arguments = parser.parse_args()
    name = f"peer_openai_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(arguments.database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    parts = urlsplit(arguments.database_url)
    url = urlunsplit(parts._replace(scheme="postgresql+psycopg", path=f"/{name}"))
    try:
        result = await measure(url, arguments.appends, arguments.history)
    finally:
        with psycopg.connect(arguments.database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
