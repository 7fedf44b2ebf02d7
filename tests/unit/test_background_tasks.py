"""BackgroundTasks: stopping waits for every task it owns, and a failing task is logged
without stopping the others."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agentstore.background import BackgroundTasks


async def test_close_cancels_and_waits_for_every_task() -> None:
    tasks = BackgroundTasks()
    finished: list[str] = []
    started = asyncio.Semaphore(0)

    async def forever(name: str) -> None:
        started.release()
        try:
            await asyncio.Event().wait()
        finally:
            finished.append(name)

    for name in ("listener", "poll", "channel"):
        tasks.spawn(forever(name), name=name)
    for _ in range(3):
        await started.acquire()
    assert len(tasks) == 3
    await tasks.close()
    assert sorted(finished) == ["channel", "listener", "poll"]
    assert len(tasks) == 0


async def test_nothing_can_start_after_close() -> None:
    tasks = BackgroundTasks()
    await tasks.close()

    async def job() -> None:
        return None

    with pytest.raises(RuntimeError, match="closed"):
        tasks.spawn(job(), name="late")


async def test_a_failing_task_is_logged_and_forgotten(caplog: pytest.LogCaptureFixture) -> None:
    tasks = BackgroundTasks()

    async def broken() -> None:
        raise ValueError("a bug")

    failed = tasks.spawn(broken(), name="broken")
    with caplog.at_level(logging.ERROR):
        # wait() is told after the task's own done callbacks, which forget and log it.
        await asyncio.wait({failed})
    assert len(tasks) == 0
    assert "background task failed" in caplog.text
    await tasks.close()


async def test_a_repeating_job_goes_on_after_a_failure() -> None:
    tasks = BackgroundTasks()
    runs: list[int] = []
    third_run = asyncio.Event()

    async def flaky() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise RuntimeError("first run fails")
        if len(runs) == 3:
            third_run.set()

    tasks.every(0.001, flaky, name="flaky")
    await asyncio.wait_for(third_run.wait(), 5)
    await tasks.close()
    assert runs[:3] == [0, 1, 2]
