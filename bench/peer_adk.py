"""Google ADK's own DatabaseSessionService, measured for bench/peers.py. Runs in a venv of its
own that has ADK (never a dependency of agentstore); prints one JSON object. With
--agentstore-target it measures agentstore's ADK adapter the same way instead (run then in
agentstore's venv).

    VENV/bin/python bench/peer_adk.py --database-url URL [--appends 1000] [--history 5000]
"""

from __future__ import annotations

import time

from google.adk.events import Event
from google.adk.sessions import BaseSessionService, DatabaseSessionService
from google.genai import types

# Run as a script from bench/ in a venv of its own: the helper beside it, not the package.
from peer_support import TEXT, Analyze, figures, run_peer

LOADS = 5


def event(number: int) -> Event:
    return Event(
        invocation_id="inv-7f3a",
        author="assistant",
        content=types.Content(role="model", parts=[types.Part(text=f"{number} {TEXT}")]),
    )


async def measure(
    url: str, appends: int, history: int, agentstore_target: str | None, analyze: Analyze
) -> dict[str, float]:
    service: BaseSessionService
    if agentstore_target:
        from agentstore.client.adk import AgentstoreSessionService

        service = AgentstoreSessionService(agentstore_target)
    else:
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
    await analyze()
    loads = []
    for _ in range(LOADS + 1):
        started = time.perf_counter()
        loaded = await service.get_session(app_name="bench", user_id="u", session_id=long.id)
        loads.append(time.perf_counter() - started)
        assert loaded is not None
        assert len(loaded.events) == history
    await service.close()  # type: ignore[attr-defined]
    return figures(appends, durations, loads[1:])


if __name__ == "__main__":
    run_peer(__doc__ or "", measure)
