"""OpenAI Agents' own SQLAlchemySession, measured for bench/peers.py. Runs in a venv of its own
that has openai-agents[sqlalchemy] (never a dependency of agentstore); prints one JSON object.

    VENV/bin/python bench/peer_openai_agents.py --database-url URL [--appends 1000] [--history 5000]

With --agentstore-target it measures agentstore's session adapter the same way instead (run
then in agentstore's venv).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession

# Run as a script from bench/ in a venv of its own: the helper beside it, not the package.
from peer_support import TEXT, Analyze, figures, run_peer
from sqlalchemy.ext.asyncio import create_async_engine

LOADS = 20


def item(number: int) -> dict[str, Any]:
    return {"role": "assistant", "content": f"{number} {TEXT}"}


async def measure(
    url: str, appends: int, history: int, agentstore_target: str | None, analyze: Analyze
) -> dict[str, float]:
    engine = create_async_engine(url)

    def new_session() -> Any:
        if agentstore_target:
            from agentstore.client.openai_agents import AgentstoreSession

            return AgentstoreSession(
                f"s-{uuid.uuid4().hex}", target=agentstore_target, app_name="bench"
            )
        return SQLAlchemySession(f"s-{uuid.uuid4().hex}", engine=engine, create_tables=True)

    session = new_session()
    for number in range(20):  # warm up
        await session.add_items([item(number)])
    durations = []
    for number in range(appends):
        started = time.perf_counter()
        await session.add_items([item(number)])
        durations.append(time.perf_counter() - started)
    long = new_session()
    for start in range(0, history, 500):
        await long.add_items([item(n) for n in range(start, min(history, start + 500))])
    await analyze()
    loads = []
    for _ in range(LOADS + 2):
        started = time.perf_counter()
        items = await long.get_items()
        loads.append(time.perf_counter() - started)
        assert len(items) == history
    for opened in (session, long):
        if agentstore_target:
            await opened.close()
    await engine.dispose()
    return figures(appends, durations, loads[2:])


if __name__ == "__main__":
    run_peer(__doc__ or "", measure)
