"""The comparison point for bench/append.py: Google ADK's DatabaseSessionService.append_event
on the same PostgreSQL. Run it with a separate virtual environment that has ADK (it is not a
dependency of agentstore):

    python3 -m venv /tmp/adk && /tmp/adk/bin/pip install 'google-adk[db]' 'psycopg[binary]'
    /tmp/adk/bin/python bench/adk_append.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

It makes a scratch database, appends events one at a time to one session (as an agent does)
with the same ~200 characters of text as bench/append.py, and prints events/s.
"""

from __future__ import annotations

import argparse
import asyncio
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
    "plan, and found that the March invoice charged the annual rate twice; it drafts a refund "
    "and asks for approval."
)[:200]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--events", type=int, default=1000)
    arguments = parser.parse_args()
    name = f"adk_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(arguments.database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    parts = urlsplit(arguments.database_url)
    url = urlunsplit(parts._replace(scheme="postgresql+psycopg", path=f"/{name}"))
    try:
        service = DatabaseSessionService(db_url=url)
        session = await service.create_session(app_name="bench", user_id="u")
        for number in range(20):  # warm up
            await service.append_event(session, make_event(number))
        started = time.perf_counter()
        for number in range(arguments.events):
            await service.append_event(session, make_event(number))
        seconds = time.perf_counter() - started
        await service.db_engine.dispose()
    finally:
        with psycopg.connect(arguments.database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    print(f"ADK DatabaseSessionService.append_event: {arguments.events / seconds:10,.0f} events/s")


def make_event(number: int) -> Event:
    return Event(
        invocation_id="inv-7f3a",
        author="assistant",
        content=types.Content(role="model", parts=[types.Part(text=f"{number} {TEXT}")]),
    )


if __name__ == "__main__":
    asyncio.run(main())
