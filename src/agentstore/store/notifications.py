"""LISTEN/NOTIFY as a doorbell: after an append commits, its replica rings for the sessions it
wrote to; every replica's one listening connection hears it and wakes its own followers,
which then read the table. The payload only says where to look ("app_name session_id").

A replica alone on its database has nobody to ring: a NOTIFY cost an awaited one-event append
about a fifth of its CPU (its own round trip, and the listener hearing it). So each listener
knows whether another replica listens (`others_listening`): it looks every
`peer_check_seconds` (pg_stat_activity), and a listener that (re)connects greets the others,
who then ring again at once. A follower on a replica that has just started may miss the rings
of appends committed before its greeting was heard; the slow poll finds those events."""

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
GREET = query("notifications", "greet")
OTHER_LISTENERS = query("notifications", "other_listeners")
# The payload of a greeting: no app is named "".
GREETING = ""


async def notify(database: Database, doorbells: list[tuple[str, str]]) -> None:
    """Ring for each (app_name, session_id). Sent outside any append transaction: NOTIFY in
    a transaction takes a cluster-wide lock at commit."""
    payloads = sorted({f"{app_name} {session_id}" for app_name, session_id in doorbells})
    async with database.connection() as connection:
        await connection.execute(NOTIFY, {"channel": CHANNEL, "doorbells": payloads})
    METRICS.count("agentstore_rings_sent_total")


class Listener:
    """One dedicated connection that LISTENs, reconnecting when it is lost. After every
    (re)connection it calls `on_reconnect`, since rings may have been missed meanwhile. It
    also keeps `others_listening` (see the module's doc): it looks at once on connecting,
    then every `peer_check_seconds`, and believes a greeting as soon as it hears one."""

    def __init__(
        self,
        conninfo: str,
        on_ring: Callable[[str, str], None],
        on_reconnect: Callable[[], None],
        retry_seconds: float = 0.5,
        peer_check_seconds: float = 1.0,
    ) -> None:
        self._conninfo = conninfo
        self._on_ring = on_ring
        self._on_reconnect = on_reconnect
        self._retry_seconds = retry_seconds
        self._peer_check_seconds = peer_check_seconds
        self.connected = asyncio.Event()
        # Whether another replica listens on this database, so that rings must be sent:
        # assumed until a look says otherwise, and again whenever this listener is down.
        self.others_listening = True
        # Looks at pg_stat_activity so far, and news of them or of a greeting, for whoever
        # waits on them (wait_for()).
        self.looks = 0
        self._news = asyncio.Condition()

    async def run(self) -> None:
        """Listen until cancelled."""
        while True:
            try:
                await self._listen_once()
            except psycopg.Error as exc:
                self.connected.clear()
                await self._believe(others_listening=True)
                log.warning("listener connection lost; reconnecting", extra={"error": str(exc)})
                await asyncio.sleep(self._retry_seconds)

    async def wait_for(self, predicate: Callable[[Listener], bool]) -> None:
        """Return once `predicate(self)` holds, as of a look or a greeting."""
        async with self._news:
            await self._news.wait_for(lambda: predicate(self))

    async def _listen_once(self) -> None:
        async with await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, application_name=APPLICATION_NAME
        ) as connection:
            await connection.execute(LISTEN)
            await connection.execute(GREET, {"channel": CHANNEL})
            own_pid = connection.info.backend_pid
            self.connected.set()
            METRICS.count("agentstore_listener_connects_total")
            self._on_reconnect()
            greeted = False
            while True:
                cursor = await connection.execute(
                    OTHER_LISTENERS, {"application_name": APPLICATION_NAME}
                )
                row = await cursor.fetchone()
                self.looks += 1
                # A greeting heard since the last look counts too: the greeter may not show
                # in pg_stat_activity yet.
                await self._believe(others_listening=greeted or bool(row and row[0]))
                greeted = False
                async for notification in connection.notifies(timeout=self._peer_check_seconds):
                    if notification.payload == GREETING:
                        if notification.pid != own_pid:
                            greeted = True
                            await self._believe(others_listening=True)
                        continue
                    app_name, _, session_id = notification.payload.partition(" ")
                    self._on_ring(app_name, session_id)

    async def _believe(self, *, others_listening: bool) -> None:
        if others_listening != self.others_listening:
            log.info(
                "other replicas listen: rings are sent"
                if others_listening
                else "no other replica listens: no rings are sent",
                extra={"others_listening": others_listening},
            )
        self.others_listening = others_listening
        async with self._news:
            self._news.notify_all()
