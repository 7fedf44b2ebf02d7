"""The calls a servicer is serving, so that a stopping server can end them itself.

When the shutdown grace period runs out, grpc cancels whatever is still open, and a client
may then see CANCELLED or INTERNAL: codes a client does not retry. So shortly before it runs
out the server ends every call still open itself, with UNAVAILABLE (`ServerShuttingDown`),
which a client resends to another replica; what such a call had not acknowledged it may not
have written, and event ids make the resend safe."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

__all__ = ["SHUTDOWN_MESSAGE", "OpenCalls", "ending_delay"]

SHUTDOWN_MESSAGE = (
    "the server is shutting down; resend what was not acknowledged, here or to another replica"
)


# Between the two cancels of `OpenCalls.end`.
SECOND_CANCEL_SECONDS = 0.2


def ending_delay(grace_seconds: float) -> float:
    """When, after stopping begins, the calls still open are ended: a second before the grace
    period runs out (half of it, for a grace under two seconds), so that each has time to
    be cancelled twice and send its status before grpc cancels it."""
    return max(grace_seconds - 1.0, grace_seconds / 2)


class OpenCalls:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[object]] = set()
        self.ending = False
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        """Counts the current task (the one serving a call) as open while the block runs."""
        task = asyncio.current_task()
        assert task is not None  # grpc.aio serves every call in a task
        self._tasks.add(task)
        for waiter in self._waiters:
            if len(self._tasks) >= waiter[0] and not waiter[1].done():
                waiter[1].set_result(None)
        try:
            yield
        finally:
            self._tasks.discard(task)

    def end(self) -> None:
        """Cancel every open call; each then ends with UNAVAILABLE (see handle_errors). What
        is still open a moment later is cancelled again: a call cancelled inside a database
        statement first waits (psycopg, up to 10 s) for the server to cancel the query, which
        a frozen database never does; a second cancel ends that wait."""
        self.ending = True
        self._cancel_open()
        asyncio.get_running_loop().call_later(SECOND_CANCEL_SECONDS, self._cancel_open)

    def _cancel_open(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def ended(self) -> None:
        """The current call is ending now: cancel it no more (its status is being sent)."""
        task = asyncio.current_task()
        if task is not None:
            self._tasks.discard(task)

    async def reach(self, count: int) -> None:
        """Returns once `count` calls are open at the same time (for an operator's or a
        test's view of a server being drained)."""
        if len(self._tasks) >= count:
            return
        waiter = (count, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await waiter[1]
        finally:
            self._waiters.remove(waiter)
