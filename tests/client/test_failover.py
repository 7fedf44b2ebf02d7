"""The client across two replicas: the one a follower (and a writer) is connected to is killed
mid-stream; it moves to the other and nothing is lost or received twice."""

from __future__ import annotations

import asyncio
import signal

from agentstore.client import AsyncClient, Event
from tests.support import ServerProcess


async def test_follow_and_append_survive_the_death_of_their_replica(
    database_url: str, app_name: str
) -> None:
    first, second = (
        ServerProcess("--database-url", database_url),
        ServerProcess("--database-url", database_url),
    )
    await first.start()
    await second.start()
    try:
        async with (
            AsyncClient([first.address, second.address]) as follower_client,
            AsyncClient([first.address, second.address]) as writer_client,
        ):
            session = await writer_client.create_session(app_name)
            received: list[Event] = []
            total = 60
            enough = asyncio.Event()

            async def follow() -> None:
                async for event in follower_client.follow(session_id=session.id):
                    received.append(event)
                    if len(received) == total // 2:
                        enough.set()
                    if len(received) == total:
                        return

            follower = asyncio.create_task(follow())
            acknowledged: list[tuple[int, ...]] = []
            for n in range(total // 2):
                result = await writer_client.append(session.id, {"type": "step", "data": {"n": n}})
                acknowledged.append(result.seqs)
            await asyncio.wait_for(enough.wait(), 30)

            assert first.process is not None
            first.process.send_signal(signal.SIGKILL)
            await first.process.wait()

            for n in range(total // 2, total):
                result = await writer_client.append(session.id, {"type": "step", "data": {"n": n}})
                acknowledged.append(result.seqs)
            await asyncio.wait_for(follower, 60)
    finally:
        await second.stop()
    assert acknowledged == [(seq,) for seq in range(1, total + 1)]
    assert [event.seq for event in received] == list(range(1, total + 1))
    assert [(event.data or {})["n"] for event in received] == list(range(total))
