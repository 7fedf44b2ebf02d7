"""Rings for appended sessions: this replica's followers at once, every other replica's
through NOTIFY (while any listens), sent after the commit and coalesced, one statement for
whatever piled up meanwhile."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from agentstore.background import BackgroundTasks
from agentstore.domain.errors import DomainError
from agentstore.live.hub import Hub

__all__ = ["Doorbell"]

log = logging.getLogger(__name__)


class Doorbell:
    def __init__(
        self,
        hub: Hub,
        notify: Callable[[list[tuple[str, str]]], Awaitable[None]],
        tasks: BackgroundTasks,
        others_listening: Callable[[], bool] = lambda: True,
    ) -> None:
        self._hub = hub
        self._tasks = tasks
        self._notify = notify
        # Whether any other replica would hear a NOTIFY (the listener knows): alone, a
        # replica's rings stop at its own followers.
        self._others_listening = others_listening
        self._pending: set[tuple[str, str]] = set()
        self._sending: asyncio.Task[None] | None = None

    def ring(self, appended: list[tuple[str, str]]) -> None:
        """(app_name, session_id) pairs whose appends just committed."""
        for app_name, session_id in appended:
            self._hub.ring(app_name, session_id)
        if not self._others_listening():
            return
        self._pending.update(appended)
        if self._sending is None or self._sending.done():
            try:
                self._sending = self._tasks.spawn(self._send(), name="doorbell")
            except RuntimeError:
                # The server is stopping; the other replicas' poll will find the events.
                self._pending.clear()

    async def _send(self) -> None:
        while self._pending:
            doorbells, self._pending = sorted(self._pending), set()
            try:
                await self._notify(doorbells)
            except DomainError as exc:  # other replicas' slow poll will find the events
                log.warning("could not notify other replicas", extra={"error": exc.message})
