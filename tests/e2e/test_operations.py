"""What an operator sees of a running server from the database side."""

from __future__ import annotations

import psycopg

from agentstore.app import AgentStoreServer
from agentstore.client import AsyncClient


async def test_the_servers_connections_are_named_in_pg_stat_activity(
    server: AgentStoreServer, client: AsyncClient, database_url: str
) -> None:
    await client.get_store_stats()  # the pool has served a call
    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        cursor = await connection.execute(
            "SELECT DISTINCT application_name FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name LIKE 'agentstore%%'"
        )
        names = {row[0] for row in await cursor.fetchall()}
    assert names == {"agentstore-pool", "agentstore-listener"}
