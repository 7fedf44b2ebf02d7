"""The composition root: builds the layers, and owns the server's lifecycle.

Start: database (embedded if no URL) -> migrations -> pool (waits until it answers) -> the
store's own start-up checks -> live fan-out (listener connected) -> gRPC server with health
SERVING. Stop (SIGTERM/SIGINT): health NOT_SERVING -> streams told to end -> stop accepting
and drain in-flight calls -> every background task -> pool -> embedded database."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from psycopg_pool import PoolTimeout

from agentstore.api.auth import Authenticator
from agentstore.api.decoding import add_service
from agentstore.api.event_encoding import event_entries
from agentstore.api.open_calls import OpenCalls, ending_delay
from agentstore.api.servicer import SessionServicer
from agentstore.background import BackgroundTasks
from agentstore.config import Settings
from agentstore.domain.callers import EVERY_APP
from agentstore.live.doorbell import Doorbell
from agentstore.live.hub import Hub
from agentstore.metrics import METRICS, serve_metrics
from agentstore.service.appends import AppendService
from agentstore.service.events import EventService
from agentstore.service.key_limits import KeyLimiter
from agentstore.service.keys import KeyService
from agentstore.service.replays import ReplayCache
from agentstore.service.search import SearchService
from agentstore.service.sessions import SessionService
from agentstore.service.states import StateService
from agentstore.service.streams import StreamService
from agentstore.store.database import Database
from agentstore.store.embedded import EmbeddedPostgres
from agentstore.store.errors import StoreNotReady
from agentstore.store.events import EventRepository
from agentstore.store.keys import KeyRepository
from agentstore.store.migrator import MigrationError, apply_migrations
from agentstore.store.notifications import Listener, notify
from agentstore.store.search import SearchRepository
from agentstore.store.sessions import SessionRepository
from agentstore.store.states import StateRepository
from agentstore.tls import CertificateFiles, server_credentials
from agentstore.tracing import Tracing, make_tracing
from agentstore.v1 import session_service_pb2

__all__ = ["AgentStoreServer", "StartupError", "migrate", "serve", "with_keys"]

log = logging.getLogger(__name__)

T = TypeVar("T")
SERVICE = session_service_pb2.DESCRIPTOR.services_by_name["SessionService"]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


# The transport's limits, set deliberately (docs/operations.md, "Transport limits").
TRANSPORT_OPTIONS: list[tuple[str, int]] = [
    # gRPC shares ports by default: a second server started by mistake on a port would
    # silently take half of the connections. Refuse instead.
    ("grpc.so_reuseport", 0),
    # Request metadata: a bearer key is 53 bytes; nobody needs more than a few KiB.
    ("grpc.max_metadata_size", 8 * 1024),
    ("grpc.absolute_max_metadata_size", 16 * 1024),
    # Calls at once on one connection (HTTP/2 streams): bounds what one client can open, and
    # a rapid-reset flood; many followers should spread over a few connections.
    ("grpc.max_concurrent_streams", 2000),
    # Ping idle connections every minute and drop those that do not answer in 20 s: a
    # vanished client's followers end instead of lingering.
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    # Clients may ping too, but not more often than every 10 s without data; two strikes
    # and the connection goes.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 2),
    # A connection with no call for 5 minutes is closed (clients reconnect on their next
    # call); any connection is asked to go after an hour, with 5 minutes for its calls to end,
    # so that clients spread over replicas added since. Followers resume by seq or token.
    ("grpc.max_connection_idle_ms", 5 * 60_000),
    ("grpc.max_connection_age_ms", 60 * 60_000),
    ("grpc.max_connection_age_grace_ms", 5 * 60_000),
    # A TLS handshake that has not finished in 20 s is dropped (the default is 120 s).
    ("grpc.server_handshake_timeout_ms", 20_000),
]


def _pending_call_limits(max_streams: int) -> list[tuple[str, int]]:
    """Calls that have arrived but that the server's loop has not taken up yet are limited by
    grpc (1,000, then some refused at random, 3,000 all): refused that way a call ends
    CANCELLED, which says nothing to its client; 2,000 followers opened at once lost about
    200 so. Room for every stream the server may hold and as many other calls: past
    `max_streams` the service itself refuses a stream with RESOURCE_EXHAUSTED."""
    pending = max(1000, 2 * max_streams)
    return [
        ("grpc.server.max_pending_requests", pending),
        ("grpc.server.max_pending_requests_hard_limit", 2 * pending),
    ]


class StartupError(RuntimeError):
    """The server cannot start for a reason the operator can fix; the message says which."""


class AgentStoreServer:
    """One agentstore server: `await start()`, then `await stop()`. `port` is the bound port."""

    def __init__(self, settings: Settings, *, tracer_provider: Any = None) -> None:
        """`tracer_provider`: an OpenTelemetry TracerProvider of the embedding program's, to
        trace with instead of what `--trace-exporter` would make."""
        self.settings = settings
        self.port = 0
        self._tracer_provider = tracer_provider
        self._embedded: EmbeddedPostgres | None = None
        self._database: Database | None = None
        self._server: grpc.aio.Server | None = None
        self._health = health_aio.HealthServicer()
        self._tasks = BackgroundTasks()
        self._metrics_server: asyncio.Server | None = None
        self.metrics_port = 0
        # The health check's ping in flight, and whether the last one was answered.
        self._ping: asyncio.Task[None] | None = None
        self._ping_answered = False
        self._hub: Hub | None = None
        self._listener: Listener | None = None
        self._servicer: SessionServicer | None = None

    async def start(self) -> None:
        """Start everything; on failure, stop what was started and raise `StartupError`."""
        try:
            await self._start()
        except BaseException as exc:
            await self.stop()
            error = _startup_error(exc)
            if error is exc:
                raise
            raise error from exc

    async def _start(self) -> None:
        settings = self.settings
        conninfo = await self._database_url()
        await apply_migrations(conninfo)
        tracing = self._tracing()
        self._database = database = Database(
            conninfo,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            call_timeout=settings.database_call_timeout.total_seconds(),
            cursor_class=tracing.cursor_class if tracing is not None else None,
        )
        await database.open(settings.database_timeout.total_seconds())
        sessions = SessionRepository(database, settings.limits)
        events = EventRepository(database, settings.limits)
        await events.check_transaction_ids()
        self._hub = hub = Hub(
            functools.partial(events.read_after, EVERY_APP),
            functools.partial(events.read_feed, EVERY_APP),
            tasks=self._tasks,
            buffer_batches=settings.follower_buffer,
            max_streams=settings.max_streams,
        )
        listener = await self._start_listening(conninfo, hub, events)
        doorbell = Doorbell(
            hub,
            functools.partial(notify, database),
            self._tasks,
            others_listening=lambda: listener.others_listening,
        )
        replays = ReplayCache(event_entries, settings.replay_cache)
        session_service = SessionService(sessions, settings.limits, replays)
        keys = KeyService(KeyRepository(database), settings.limits)
        key_limiter = KeyLimiter(
            max_streams=settings.key_max_streams,
            append_rate=settings.key_append_rate,
            append_burst=settings.key_append_burst,
        )
        auth = Authenticator(keys if settings.auth == "api-key" else None)
        servicer = SessionServicer(
            session_service,
            EventService(events, settings.limits, replays, on_commit=doorbell.ring),
            AppendService(events, settings.limits, key_limiter, on_commit=doorbell.ring),
            SearchService(
                SearchRepository(database, candidates=settings.search_candidates),
                settings.limits,
            ),
            StreamService(
                sessions, events, hub, settings.limits,
                heartbeat_seconds=settings.heartbeat_interval.total_seconds(),
                key_limiter=key_limiter, replays=replays,
            ),
            StateService(StateRepository(database, settings.limits), settings.limits),
            auth,
        )  # fmt: skip
        servicer.tracing = tracing
        self._servicer = servicer
        self._server = await self._serve(servicer)
        if settings.metrics_listen:
            await self._serve_metrics(settings.metrics_listen, hub, database, listener, replays)
        await self._set_health(SERVING)
        self._tasks.every(
            settings.reaper_interval.total_seconds(),
            functools.partial(self._reap, session_service),
            name="reaper",
        )
        self._tasks.every(
            settings.health_check_interval.total_seconds(), self._check_database, name="health"
        )
        host = settings.listen.rpartition(":")[0]
        log.info(f"agentstore serving on {host}:{self.port}", extra={"port": self.port})

    def _tracing(self) -> Tracing | None:
        try:
            return make_tracing(self.settings.trace_exporter, self._tracer_provider)
        except ImportError as exc:
            raise StartupError(
                f"--trace-exporter {self.settings.trace_exporter} needs OpenTelemetry:"
                f" pip install 'agentstore[otel]' ({exc})"
            ) from None

    async def _database_url(self) -> str:
        if self.settings.database_url:
            return self.settings.database_url
        self._embedded = EmbeddedPostgres(self.settings.data_dir)
        return await self._embedded.start()

    async def _start_listening(self, conninfo: str, hub: Hub, events: EventRepository) -> Listener:
        """The doorbell's LISTEN connection and the slow poll; returns once listening."""
        listener = Listener(conninfo, hub.ring, hub.ring_all)
        self._tasks.spawn(listener.run(), name="listener")
        self._tasks.spawn(
            hub.poll(self.settings.live_poll_interval.total_seconds(), events.changed_since),
            name="live-poll",
        )
        timeout = self.settings.database_timeout.total_seconds()
        await asyncio.wait_for(listener.connected.wait(), timeout)
        self._listener = listener
        return listener

    async def _serve(self, servicer: SessionServicer) -> grpc.aio.Server:
        # gRPC refuses messages past twice our own limit outright; between the two, the
        # service answers with details naming the limit.
        receive_limit = 2 * self.settings.max_message_bytes
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", receive_limit),
                *_pending_call_limits(self.settings.max_streams),
                *TRANSPORT_OPTIONS,
            ]
        )
        add_service(server, SERVICE, servicer)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            [
                SERVICE.full_name,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            server,
        )
        listen = self.settings.listen
        settings = self.settings
        open_to_anyone = (
            settings.auth == "none"
            and settings.tls_cert is None
            and not settings.listens_on_loopback
        )
        if open_to_anyone and not self.settings.insecure:
            raise StartupError(
                f"refusing to serve {listen} without authentication: anyone who reaches it "
                "could read and delete every app's sessions. Use --auth api-key (make keys "
                "with `agentstore keys create`), listen on 127.0.0.1, or pass --insecure to "
                "serve it open anyway"
            )
        try:
            if settings.tls_cert is not None and settings.tls_key is not None:
                files = CertificateFiles(
                    settings.tls_cert, settings.tls_key, settings.tls_client_ca
                )
                credentials = server_credentials(
                    files, require_client_cert=settings.tls_client_ca is not None
                )
                self.port = server.add_secure_port(listen, credentials)
            else:
                self.port = server.add_insecure_port(listen)
        except OSError as exc:
            raise StartupError(f"cannot read the TLS files: {exc}") from exc
        except RuntimeError as exc:  # what grpc raises when it cannot bind
            raise StartupError(f"cannot listen on {listen}: {exc}") from exc
        if self.port == 0:
            raise StartupError(f"cannot listen on {listen}")
        await server.start()
        return server

    @property
    def open_streams(self) -> int:
        """StreamEvents calls being served now."""
        return self._hub.open_streams if self._hub is not None else 0

    @property
    def background_tasks(self) -> int:
        """Tasks running besides calls (listener, poll, live channels, reaper, health)."""
        return len(self._tasks)

    async def _serve_metrics(
        self,
        listen: str,
        hub: Hub,
        database: Database,
        listener: Listener,
        replays: ReplayCache,
    ) -> None:
        METRICS.gauge("agentstore_followers_open", lambda: hub.open_streams)
        METRICS.gauge("agentstore_other_replicas_listening", lambda: int(listener.others_listening))
        METRICS.gauge("agentstore_pool_size", lambda: database.pool_stats()["pool_size"])
        METRICS.gauge("agentstore_pool_idle", lambda: database.pool_stats()["pool_available"])
        METRICS.gauge("agentstore_pool_waiting", lambda: database.pool_stats()["requests_waiting"])
        METRICS.gauge("agentstore_database_uses_total", lambda: database.uses)
        METRICS.gauge("agentstore_replay_cache_bytes", lambda: replays.size)
        host, _, port = listen.rpartition(":")
        self._metrics_server = await serve_metrics(host.strip("[]") or "127.0.0.1", int(port))
        bound = self._metrics_server.sockets[0].getsockname()
        self.metrics_port = int(bound[1])
        log.info("metrics on http://%s:%s/metrics", bound[0], bound[1])

    @property
    def open_calls(self) -> OpenCalls:
        """The calls being served (once started)."""
        assert self._servicer is not None, "not started"
        return self._servicer.open_calls

    async def stop(self) -> None:
        """Stop gracefully; safe to call more than once and after a failed start."""
        if self._metrics_server is not None:
            self._metrics_server.close()
            self._metrics_server = None
        await self._health.enter_graceful_shutdown()
        if self._hub is not None:
            # Streams would otherwise hold the drain for the whole grace period: they end
            # now with UNAVAILABLE, and their clients reconnect elsewhere.
            self._hub.close()
        if self._server is not None:
            grace = self.settings.shutdown_grace.total_seconds()
            # Before grpc cancels what is still open when the grace runs out (its clients
            # would see CANCELLED or INTERNAL), the servicer ends it with UNAVAILABLE.
            ending = asyncio.get_running_loop().call_later(ending_delay(grace), self.open_calls.end)
            try:
                await self._server.stop(grace)
            finally:
                ending.cancel()
            self._server = None
        await self._tasks.close()
        if self._database is not None:
            await self._database.close()
            self._database = None
        if self._embedded is not None:
            await self._embedded.stop()
            self._embedded = None

    @property
    def hub(self) -> Hub:
        """The running server's live fan-out; for tests and operations."""
        if self._hub is None:
            raise RuntimeError("the server is not running")
        return self._hub

    @property
    def listener(self) -> Listener:
        """The running server's LISTEN connection and what it knows of other replicas; for
        tests and operations."""
        if self._listener is None:
            raise RuntimeError("the server is not running")
        return self._listener

    @property
    def database(self) -> Database:
        """The running server's database (its pool); for tests and operations."""
        if self._database is None:
            raise RuntimeError("the server is not running")
        return self._database

    async def _set_health(self, status: int) -> None:
        await self._health.set("", status)
        await self._health.set(SERVICE.full_name, status)

    async def _check_database(self) -> None:
        assert self._database is not None  # the check runs only while serving
        # A ping gets as long as the interval between pings, and at least a second: a frozen
        # database, or a pool with no connection to give, is as down as a refused one. The
        # ping runs apart and is not cancelled (psycopg would wait for the frozen server to
        # take the cancel): a ping still running is waited on by the next check instead.
        if self._ping is None or self._ping.done():
            self._ping = self._tasks.spawn(self._answer_ping(), name="health ping")
        done, _ = await asyncio.wait(
            {self._ping}, timeout=max(1.0, self.settings.health_check_interval.total_seconds())
        )
        answered = bool(done) and self._ping_answered
        await self._set_health(SERVING if answered else NOT_SERVING)

    async def _answer_ping(self) -> None:
        assert self._database is not None
        self._ping_answered = await self._database.ping()

    async def _reap(self, sessions: SessionService) -> None:
        purged = await sessions.reap(
            expired_grace=self.settings.expired_grace,
            deleted_retention=self.settings.deleted_retention,
        )
        METRICS.count("agentstore_reaper_purged_total", amount=purged)
        if purged:
            log.info("reaper purged sessions", extra={"purged": purged})


def _startup_error(exc: BaseException) -> BaseException:
    """What start() raises for `exc`: a StartupError with a message for the operator, or
    `exc` itself when it is not one an operator can fix (a bug, a cancellation)."""
    if isinstance(exc, StartupError):
        return exc
    if isinstance(exc, psycopg.OperationalError | PoolTimeout):
        return StartupError(f"cannot reach the database: {exc}".strip())
    if isinstance(exc, MigrationError | StoreNotReady):
        return StartupError(str(exc))
    if isinstance(exc, TimeoutError):
        return StartupError("the database did not answer the listener in time")
    if isinstance(exc, psycopg.Error):  # for example a role without the rights it needs
        return StartupError(f"the database refused: {exc}".strip())
    return exc


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


async def with_keys(settings: Settings, work: Callable[[KeyService], Awaitable[T]]) -> T:
    """Run `work` on the key service of the configured database (starting and stopping the
    embedded one if needed, migrating it first), as `agentstore keys` does."""
    embedded = None if settings.database_url else EmbeddedPostgres(settings.data_dir)
    try:
        conninfo = settings.database_url if embedded is None else await embedded.start()
        assert conninfo is not None  # one of the two is always there
        await apply_migrations(conninfo)
        database = Database(conninfo, min_size=1, max_size=2)
        await database.open(settings.database_timeout.total_seconds())
        try:
            return await work(KeyService(KeyRepository(database), settings.limits))
        finally:
            await database.close()
    except (psycopg.OperationalError, PoolTimeout, MigrationError) as exc:
        raise StartupError(f"cannot use the database: {exc}".strip()) from exc
    finally:
        if embedded is not None:
            await embedded.stop()


async def migrate(settings: Settings) -> int:
    """Apply pending migrations (starting and stopping the embedded database if needed)."""
    embedded = None if settings.database_url else EmbeddedPostgres(settings.data_dir)
    try:
        conninfo = settings.database_url if embedded is None else await embedded.start()
        assert conninfo is not None  # one of the two is always there
        return await apply_migrations(conninfo)
    except (psycopg.OperationalError, MigrationError) as exc:
        raise StartupError(f"cannot migrate: {exc}".strip()) from exc
    finally:
        if embedded is not None:
            await embedded.stop()
