"""LISTEN/NOTIFY as a doorbell: after an append commits, its replica rings for the sessions it
wrote to; every replica's one listening connection hears it and wakes its own followers,
which then read the table. The payload only says where to look ("app_name session_id")."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import psycopg

from agentstore.metrics import METRICS
from agentstore.store.database import Database
from agentstore.store.queries import query

__all__ = ["CHANNEL", "Listener", "notify"]

log = logging.getLogger(__name__)

CHANNEL = "agentstore_events"
APPLICATION_NAME = "agentstore-listener"
NOTIFY = query("notifications", "notify")
LISTEN = query("notifications", "listen")


async def notify(database: Database, doorbells: list[tuple[str, str]]) -> None:
    """Ring for each (app_name, session_id). Sent outside any append transaction: NOTIFY in
    a transaction takes a cluster-wide lock at commit."""
    payloads = sorted({f"{app_name} {session_id}" for app_name, session_id in doorbells})
    async with database.connection() as connection:
        await connection.execute(NOTIFY, {"channel": CHANNEL, "doorbells": payloads})


class Listener:
    """One dedicated connection that LISTENs, reconnecting when it is lost. After every
    (re)connection it calls `on_reconnect`, since rings may have been missed meanwhile."""

    def __init__(
        self,
        conninfo: str,
        on_ring: Callable[[str, str], None],
        on_reconnect: Callable[[], None],
        retry_seconds: float = 0.5,
    ) -> None:
        self._conninfo = conninfo
        self._on_ring = on_ring
        self._on_reconnect = on_reconnect
        self._retry_seconds = retry_seconds
        self.connected = asyncio.Event()

    async def run(self) -> None:
        """Listen until cancelled."""
        while True:
            try:
                await self._listen_once()
            except psycopg.Error as exc:
                self.connected.clear()
                log.warning("listener connection lost; reconnecting", extra={"error": str(exc)})
                await asyncio.sleep(self._retry_seconds)

    async def _listen_once(self) -> None:
        async with await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, application_name=APPLICATION_NAME
        ) as connection:
            await connection.execute(LISTEN)
            self.connected.set()
            METRICS.count("agentstore_listener_connects_total")
            self._on_reconnect()
            async for notification in connection.notifies():
                app_name, _, session_id = notification.payload.partition(" ")
                self._on_ring(app_name, session_id)
