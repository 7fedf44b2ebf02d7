"""BackgroundTasks: the one owner of every task the server runs besides calls.

The listener, the live poll, each live channel's reader, the doorbell's sender, the reaper and
the health check all start here, so that stopping the server cancels and waits for every one
of them: nothing is left running against a closed pool. A task that fails is logged (it is a
bug: each task handles the failures it expects) and forgotten; the others go on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

__all__ = ["BackgroundTasks"]

log = logging.getLogger(__name__)


class BackgroundTasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run `coroutine` as a task owned here. Raises RuntimeError after `close()`."""
        if self._closed:
            coroutine.close()
            raise RuntimeError("background tasks are closed: the server is stopping")
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def every(self, seconds: float, job: Callable[[], Awaitable[None]], name: str) -> None:
        """Run `job` every `seconds` until closed; a failing run is logged and the next one
        still happens."""
        self.spawn(_repeat(seconds, job, name), name)

    async def close(self) -> None:
        """Cancel every task and wait until all have ended; spawning is refused from now on."""
        self._closed = True
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("background task failed", exc_info=error, extra={"task": task.get_name()})


async def _repeat(seconds: float, job: Callable[[], Awaitable[None]], name: str) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await job()
        except Exception:
            log.exception("background job failed", extra={"task": name})
