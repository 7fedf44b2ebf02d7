"""Google ADK's own DatabaseSessionService, measured for bench/peers.py. Runs in a venv of its
own that has ADK (never a dependency of agentstore); prints one JSON object.

    VENV/bin/python bench/peer_adk.py --database-url URL [--appends 1000] [--history 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg
from google.adk.events import Event
from google.adk.sessions import DatabaseSessionService
from google.genai import types
from psycopg import sql

TEXT = (
    "The agent looked up the customer's last three invoices, compared the totals with the "
    "plan, and found that the March invoice charged the annual rate twice; it drafts a refund."
)
LOADS = 5


def event(number: int) -> Event:
    return Event(
        invocation_id="inv-7f3a",
        author="assistant",
        content=types.Content(role="model", parts=[types.Part(text=f"{number} {TEXT}")]),
    )


async def measure(url: str, appends: int, history: int) -> dict[str, float]:
    service = DatabaseSessionService(db_url=url)
    session = await service.create_session(app_name="bench", user_id="u")
    for number in range(20):  # warm up
        await service.append_event(session, event(number))
    durations = []
    for number in range(appends):
        started = time.perf_counter()
        await service.append_event(session, event(number))
        durations.append(time.perf_counter() - started)
    long = await service.create_session(app_name="bench", user_id="u")
    for number in range(history):
        await service.append_event(long, event(number))
    loads = []
    for _ in range(LOADS + 1):
        started = time.perf_counter()
        loaded = await service.get_session(app_name="bench", user_id="u", session_id=long.id)
        loads.append(time.perf_counter() - started)
        assert loaded is not None
        assert len(loaded.events) == history
    await service.db_engine.dispose()
    return {
        "append_p50_ms": statistics.median(durations) * 1000,
        "appends_per_second": appends / sum(durations),
        "load_ms": statistics.median(loads[1:]) * 1000,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--appends", type=int, default=1000)
    parser.add_argument("--history", type=int, default=5000)
    arguments = parser.parse_args()
    name = f"peer_adk_{uuid.uuid4().hex[:8]}"
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
