"""Fixtures shared by every test: a PostgreSQL server, a database of this run's own, and a
running agentstore server with a channel to it.

`--database-url URL` points the run at an existing PostgreSQL (the URL's database is only used
to create and drop this run's databases). Without it, the run starts an embedded PostgreSQL
in a temporary directory."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import grpc
import psycopg
import pytest
from psycopg import sql

from agentstore.app import AgentStoreServer
from agentstore.client import AsyncClient
from agentstore.config import Settings
from agentstore.store.embedded import EmbeddedPostgres
from agentstore.v1 import session_service_pb2_grpc
from tests.support import with_database

CreateDatabase = Callable[[], Awaitable[str]]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--database-url",
        default=None,
        help="PostgreSQL URL to create this run's databases on (default: an embedded one)",
    )


@pytest.fixture(scope="session")
async def postgres_admin_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A URL of a PostgreSQL server this run may create databases on."""
    given = request.config.getoption("--database-url")
    if given:
        yield given
        return
    embedded = EmbeddedPostgres(tmp_path_factory.mktemp("embedded"))
    url = await embedded.start()
    try:
        yield with_database(url, "postgres")
    finally:
        await embedded.stop()


@pytest.fixture(scope="session")
async def create_database(postgres_admin_url: str) -> AsyncIterator[CreateDatabase]:
    """Makes empty databases named for this run; drops them all when the run ends."""
    created: list[str] = []

    async def create() -> str:
        name = f"agentstore_test_{uuid.uuid4().hex[:12]}"
        async with await psycopg.AsyncConnection.connect(
            postgres_admin_url, autocommit=True
        ) as connection:
            await connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        return with_database(postgres_admin_url, name)

    yield create
    async with await psycopg.AsyncConnection.connect(
        postgres_admin_url, autocommit=True
    ) as connection:
        for name in created:
            await connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
async def database_url(create_database: CreateDatabase) -> str:
    """This run's shared database; the server fixture migrates it."""
    return await create_database()


def server_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "listen": "127.0.0.1:0",
        "database_url": database_url,
        "shutdown_grace": "5s",
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings.model_validate(values)


@contextlib.asynccontextmanager
async def extra_server(
    database_url: str, **overrides: object
) -> AsyncIterator[session_service_pb2_grpc.SessionServiceStub]:
    """A client of one more in-process server with these settings, stopped afterwards."""
    running = AgentStoreServer(server_settings(database_url, **overrides))
    await running.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as opened:
            yield session_service_pb2_grpc.SessionServiceStub(opened)
    finally:
        await running.stop()


@pytest.fixture(scope="session")
async def server(database_url: str) -> AsyncIterator[AgentStoreServer]:
    """One in-process agentstore server for the whole run."""
    running = AgentStoreServer(server_settings(database_url))
    await running.start()
    yield running
    await running.stop()


@pytest.fixture(scope="session")
async def channel(server: AgentStoreServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as opened:
        yield opened


@pytest.fixture
async def client(server: AgentStoreServer) -> AsyncIterator[AsyncClient]:
    """The Python client of the run's server."""
    async with AsyncClient(f"127.0.0.1:{server.port}") as opened:
        yield opened


@pytest.fixture(scope="session")
def stub(channel: grpc.aio.Channel) -> session_service_pb2_grpc.SessionServiceStub:
    return session_service_pb2_grpc.SessionServiceStub(channel)


@pytest.fixture
def app_name() -> str:
    """An app name no other test uses, so tests sharing the database never see each other."""
    return f"app-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def scratch_dir(tmp_path: Path) -> Iterator[Path]:
    # The embedded PostgreSQL runs as an unprivileged user when the tests run as root: it
    # needs to reach its data directory.
    tmp_path.chmod(0o755)
    return tmp_path
