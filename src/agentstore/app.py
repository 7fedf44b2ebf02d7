"""The composition root: builds the layers, and owns the server's lifecycle.

Start: database (embedded if no URL) -> migrations -> pool (waits until it answers) -> gRPC
server with health SERVING. Stop (SIGTERM/SIGINT): health NOT_SERVING -> stop accepting and
drain in-flight calls -> background tasks -> pool -> embedded database."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
from collections.abc import Awaitable, Callable

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from psycopg_pool import PoolTimeout

from agentstore.api.decoding import add_service
from agentstore.api.servicer import SessionServicer
from agentstore.config import Settings
from agentstore.domain.callers import EVERY_APP
from agentstore.domain.events import Event
from agentstore.live.doorbell import Doorbell
from agentstore.live.hub import Hub
from agentstore.service.events import EventService
from agentstore.service.search import SearchService
from agentstore.service.sessions import SessionService
from agentstore.service.streams import StreamService
from agentstore.store.database import Database
from agentstore.store.embedded import EmbeddedPostgres
from agentstore.store.events import EventRepository
from agentstore.store.migrator import MigrationError, apply_migrations
from agentstore.store.notifications import Listener, notify
from agentstore.store.search import SearchRepository
from agentstore.store.sessions import SessionRepository
from agentstore.v1 import session_service_pb2

__all__ = ["AgentStoreServer", "StartupError", "migrate", "serve"]

log = logging.getLogger(__name__)

SERVICE_NAME = session_service_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name


class StartupError(RuntimeError):
    """The server cannot start for a reason the operator can fix; the message says which."""


class AgentStoreServer:
    """One agentstore server: `await start()`, then `await stop()`. `port` is the bound port."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = 0
        self._embedded: EmbeddedPostgres | None = None
        self._database: Database | None = None
        self._server: grpc.aio.Server | None = None
        self._health = health_aio.HealthServicer()
        self._tasks: list[asyncio.Task[None]] = []
        self._hub: Hub | None = None

    async def start(self) -> None:
        """Start everything; on failure, stop what was started and re-raise."""
        try:
            await self._start()
        except (psycopg.OperationalError, PoolTimeout) as exc:
            await self.stop()
            raise StartupError(f"cannot reach the database: {exc}".strip()) from exc
        except MigrationError as exc:
            await self.stop()
            raise StartupError(str(exc)) from exc
        except TimeoutError as exc:
            await self.stop()
            raise StartupError("the database did not answer the listener in time") from exc
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        settings = self.settings
        conninfo = await self._database_url()
        await apply_migrations(conninfo)
        self._database = Database(
            conninfo, min_size=settings.pool_min_size, max_size=settings.pool_max_size
        )
        await self._database.open(settings.database_timeout.total_seconds())
        database = self._database
        session_repository = SessionRepository(database, settings.limits)
        event_repository = EventRepository(database, settings.limits)
        if (foreign := await event_repository.foreign_tx_id()) is not None:
            raise StartupError(
                f"the events table holds transaction ids from another PostgreSQL cluster (up to"
                f" {foreign[0]}; this one is at {foreign[1]}), as after restoring a logical dump:"
                " feeds and search would hide those events. Reset them with"
                " `UPDATE events SET tx_id = '3'` (docs/operations.md, 'Moving the database')"
                " and start again"
            )
        self._hub = Hub(
            _session_reader(event_repository),
            functools.partial(event_repository.read_feed, EVERY_APP),
            buffer_batches=settings.follower_buffer,
            max_streams=settings.max_streams,
        )
        doorbell = Doorbell(self._hub, lambda doorbells: notify(database, doorbells))
        listener = Listener(conninfo, self._hub.ring, self._hub.ring_all)
        sessions = SessionService(session_repository, settings.limits)
        events = EventService(event_repository, settings.limits, on_commit=doorbell.ring)
        search = SearchService(
            SearchRepository(database, candidates=settings.search_candidates), settings.limits
        )
        streams = StreamService(
            session_repository, event_repository, self._hub, settings.limits,
            heartbeat_seconds=settings.heartbeat_interval.total_seconds(),
        )  # fmt: skip
        self._tasks.append(asyncio.create_task(listener.run(), name="listener"))
        self._tasks.append(
            asyncio.create_task(
                self._hub.poll(settings.live_poll_interval.total_seconds()), name="live-poll"
            )
        )
        await asyncio.wait_for(listener.connected.wait(), settings.database_timeout.total_seconds())

        # gRPC refuses messages past twice our own limit outright; between the two, the
        # service answers with details naming the limit.
        receive_limit = 2 * settings.max_message_bytes
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", receive_limit),
                # gRPC shares ports by default: a second server started by mistake on a port
                # would silently take half of the connections. Refuse instead.
                ("grpc.so_reuseport", 0),
            ]
        )
        add_service(
            server,
            session_service_pb2.DESCRIPTOR.services_by_name["SessionService"],
            SessionServicer(sessions, events, search, streams),
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            [
                SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            server,
        )
        try:
            self.port = server.add_insecure_port(settings.listen)
        except RuntimeError as exc:  # what grpc raises when it cannot bind
            raise StartupError(f"cannot listen on {settings.listen}: {exc}") from exc
        if self.port == 0:
            raise StartupError(f"cannot listen on {settings.listen}")
        self._server = server
        await server.start()
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        self._tasks += [
            asyncio.create_task(
                self._every(settings.reaper_interval.total_seconds(), lambda: self._reap(sessions)),
                name="reaper",
            ),
            asyncio.create_task(
                self._every(settings.health_check_interval.total_seconds(), self._check_database),
                name="health",
            ),
        ]
        host = settings.listen.rpartition(":")[0]
        log.info(f"agentstore serving on {host}:{self.port}", extra={"port": self.port})

    async def _database_url(self) -> str:
        if self.settings.database_url:
            return self.settings.database_url
        self._embedded = EmbeddedPostgres(self.settings.data_dir)
        return await self._embedded.start()

    @property
    def open_streams(self) -> int:
        """StreamEvents calls being served now."""
        return self._hub.open_streams if self._hub is not None else 0

    async def stop(self) -> None:
        """Stop gracefully; safe to call more than once and after a failed start."""
        await self._health.enter_graceful_shutdown()
        if self._hub is not None:
            # Streams would otherwise hold the drain for the whole grace period: they end
            # now with UNAVAILABLE, and their clients reconnect elsewhere.
            self._hub.close()
        if self._server is not None:
            await self._server.stop(self.settings.shutdown_grace.total_seconds())
            self._server = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._database is not None:
            await self._database.close()
            self._database = None
        if self._embedded is not None:
            await self._embedded.stop()
            self._embedded = None

    async def _set_health(self, status: int) -> None:
        await self._health.set("", status)
        await self._health.set(SERVICE_NAME, status)

    async def _check_database(self) -> None:
        assert self._database is not None
        serving = await self._database.ping()
        await self._set_health(
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )

    async def _reap(self, sessions: SessionService) -> None:
        purged = await sessions.reap(
            expired_grace=self.settings.expired_grace,
            deleted_retention=self.settings.deleted_retention,
        )
        if purged:
            log.info("reaper purged sessions", extra={"purged": purged})

    @staticmethod
    async def _every(interval: float, job: Callable[[], Awaitable[None]]) -> None:
        """Run `job` every `interval` seconds until cancelled; a failing run is logged and the
        next one still happens."""
        while True:
            await asyncio.sleep(interval)
            try:
                await job()
            except Exception:
                log.exception("background job failed")


async def serve(settings: Settings) -> None:
    """Run a server until SIGTERM or SIGINT, then stop it gracefully."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    server = AgentStoreServer(settings)
    await server.start()
    await stopping.wait()
    log.info("agentstore stopping")
    await server.stop()
    log.info("agentstore stopped")


async def migrate(settings: Settings) -> int:
    """Apply pending migrations (starting and stopping the embedded database if needed)."""
    embedded = None if settings.database_url else EmbeddedPostgres(settings.data_dir)
    try:
        conninfo = settings.database_url if embedded is None else await embedded.start()
        assert conninfo is not None
        return await apply_migrations(conninfo)
    except (psycopg.OperationalError, MigrationError) as exc:
        raise StartupError(f"cannot migrate: {exc}".strip()) from exc
    finally:
        if embedded is not None:
            await embedded.stop()


def _session_reader(
    repository: EventRepository,
) -> Callable[[str, int, int], Awaitable[list[tuple[int, Event]]]]:
    async def read(session_id: str, after_seq: int, limit: int) -> list[tuple[int, Event]]:
        events = await repository.read_after(EVERY_APP, session_id, after_seq, limit)
        return [(event.seq, event) for event in events]

    return read
