"""A client of the run's in-process server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agentstore.app import AgentStoreServer
from agentstore.client import AsyncClient


@pytest.fixture
async def client(server: AgentStoreServer) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(f"127.0.0.1:{server.port}") as opened:
        yield opened
