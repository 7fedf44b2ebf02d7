"""The connection pool: the only object that holds database connections for request work."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, LiteralString

import orjson
import psycopg
from psycopg import postgres, sql
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from agentstore.domain.errors import StoreUnavailable
from agentstore.domain.events import JsonDocument
from agentstore.store.errors import translate
from agentstore.store.queries import query

__all__ = ["Connection", "Database", "fetch_tuples"]

log = logging.getLogger(__name__)

CONFIGURE = query("connection", "configure")
PING = query("connection", "ping")
LIMIT_STATEMENTS = query("connection", "limit_statements")

Connection = psycopg.AsyncConnection[dict[str, Any]]


class _JsonDocumentDumper(Dumper):
    """Writes a validated JsonDocument as jsonb from its encoding: JSON is made only once."""

    oid = postgres.types["jsonb"].oid

    def dump(self, obj: JsonDocument) -> bytes:
        return obj.encoded.encode()


class _JsonDocumentBinaryDumper(_JsonDocumentDumper):
    format = Format.BINARY

    def dump(self, obj: JsonDocument) -> bytes:
        # jsonb's binary form: a format version byte, then the JSON text.
        return b"\x01" + obj.encoded.encode()


async def _configure(
    connection: psycopg.AsyncConnection[object], *, statement_timeout_ms: int
) -> None:
    connection.adapters.register_dumper(JsonDocument, _JsonDocumentDumper)
    connection.adapters.register_dumper(JsonDocument, _JsonDocumentBinaryDumper)
    # Every event read parses up to three jsonb values; orjson does it in a fraction of the
    # time of the json module (replay of 100,000 events: about 45,000 -> 55,000 events/s).
    # Numbers past 64 bits come back as floats, which is what a protobuf Struct holds anyway.
    set_json_loads(orjson.loads, connection)
    await connection.execute(CONFIGURE)
    await connection.execute(LIMIT_STATEMENTS, {"milliseconds": str(statement_timeout_ms)})
    await connection.commit()


POOL_NAME = "agentstore-pool"
RECONNECT_SECONDS = 3.0


class Database:
    """Owns an `AsyncConnectionPool`. Repositories borrow connections through `connection()`;
    connection failures surface as `StoreUnavailable`."""

    def __init__(
        self,
        conninfo: str,
        *,
        min_size: int,
        max_size: int,
        call_timeout: float = 30.0,
        cursor_class: type[Any] | None = None,
    ) -> None:
        self.conninfo = conninfo
        # The longest a use of the database may take, waiting for a connection included: the
        # server stops a statement past it (statement_timeout) and a block of work is given up
        # past it here too, for a database too frozen to stop anything.
        self._call_timeout = call_timeout
        # How many times the database was used (connection() blocks): what a replica costs
        # the database (agentstore_database_uses_total).
        self.uses = 0
        self._pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            open=False,
            configure=functools.partial(_configure, statement_timeout_ms=int(call_timeout * 1000)),
            timeout=call_timeout,
            # After an outage psycopg_pool retries with a growing delay (doubling up to the
            # give-up time, 5 minutes by default): a 20 s outage left appends failing 9.6 s
            # after the database was back. Giving up after a few seconds keeps the delay
            # short; the next call (or health ping) starts a new attempt at once.
            reconnect_timeout=RECONNECT_SECONDS,
            # Autocommit: a single statement is its own transaction, one round trip instead
            # of three. Work that needs several statements to be atomic uses transaction().
            # Named, so that pg_stat_activity tells the pool from the listener
            # (notifications.APPLICATION_NAME) and from other clients.
            # A cursor class of the caller's (tracing's, which makes a span per statement).
            kwargs={
                "row_factory": dict_row,
                "autocommit": True,
                "application_name": POOL_NAME,
                **({"cursor_factory": cursor_class} if cursor_class is not None else {}),
            },
            # No check on every checkout: it costs a round trip per use (it halved the rate
            # of single-event appends). A connection that died is reported as UNAVAILABLE
            # once, and the pool replaces it.
            name="agentstore",
        )

    def pool_stats(self) -> dict[str, int]:
        """The pool's own measures: pool_size, pool_available, requests_waiting, ..."""
        return self._pool.get_stats()

    async def open(self, wait_seconds: float = 30.0) -> None:
        """Open the pool and wait until `min_size` connections are up.

        Raises `psycopg_pool.PoolTimeout` when the database does not answer in time."""
        await self._pool.open(wait=True, timeout=wait_seconds)

    async def close(self) -> None:
        await self._pool.close()

    async def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            async with self.connection() as connection:
                await connection.execute(PING)
        except StoreUnavailable:
            return False
        return True

    @asynccontextmanager
    async def connection(self, *, session_id: str = "") -> AsyncIterator[Connection]:
        """A pooled connection in autocommit mode: each statement commits on its own. Database
        errors in the block come out translated (store.errors), about `session_id` if given."""
        self.uses += 1
        try:
            async with asyncio.timeout(self._call_timeout), self._pool.connection() as connection:
                yield connection
        except TimeoutError:
            log.warning("database call timed out", extra={"seconds": self._call_timeout})
            raise StoreUnavailable(
                f"the database did not answer within {self._call_timeout:g} s"
            ) from None
        except (psycopg.Error, PoolTimeout, PoolClosed) as exc:
            translated = translate(exc, session_id=session_id)
            if translated is exc:
                raise
            if isinstance(translated, StoreUnavailable):
                log.warning("database unavailable", extra={"error": str(exc)})
            raise translated from exc


async def fetch_tuples(
    connection: Connection,
    query: LiteralString | sql.Composed,
    params: dict[str, Any],
    *,
    prepare: bool | None = None,
) -> list[tuple[Any, ...]]:
    """All rows of `query` as tuples: building a dict per row cost event reads a tenth of
    their time, so the hot reads take positional rows instead."""
    cursor = connection.cursor(row_factory=tuple_row)
    await cursor.execute(query, params, prepare=prepare)
    return await cursor.fetchall()
