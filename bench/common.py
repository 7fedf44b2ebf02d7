"""What every benchmark needs: a scratch database and agentstore servers in subprocesses."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
SERVING_LINE = re.compile(rb"agentstore serving on (\S+):(\d+)")


def parser(description: str) -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(description=description)
    result.add_argument(
        "--database-url",
        help="PostgreSQL server to make a scratch database on (default: an embedded one)",
    )
    return result


async def analyze(database_url: str) -> None:
    """ANALYZE the database's tables, as autovacuum does within about a minute of a bulk
    write in any deployment. A benchmark that loads data then reads it at once would
    otherwise measure plans made without statistics: on a never-analyzed events table
    PostgreSQL read a session's pages by a bitmap scan and a sort of all its remaining rows,
    which made a 5,000-event replay a third slower (docs/performance.md)."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        await connection.execute("ANALYZE")


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@contextlib.asynccontextmanager
async def scratch_databases(admin_url: str | None, count: int) -> AsyncIterator[list[str]]:
    """`count` new empty databases (on `admin_url`'s server, or on one embedded PostgreSQL in
    a temporary directory), dropped afterwards."""
    from agentstore.store.embedded import EmbeddedPostgres

    embedded = None
    names = [f"agentstore_bench_{uuid.uuid4().hex[:8]}" for _ in range(count)]
    with tempfile.TemporaryDirectory() as scratch:
        if admin_url is None:
            os.chmod(scratch, 0o755)  # the embedded server runs as another user under root
            embedded = EmbeddedPostgres(Path(scratch))
            admin_url = _with_database(await embedded.start(), "postgres")
        async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as admin:
            for name in names:
                await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield [_with_database(admin_url, name) for name in names]
        finally:
            async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as admin:
                for name in names:
                    await admin.execute(
                        sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name))
                    )
            if embedded is not None:
                await embedded.stop()


@contextlib.asynccontextmanager
async def scratch_database(admin_url: str | None) -> AsyncIterator[str]:
    """One new empty database, as scratch_databases()."""
    async with scratch_databases(admin_url, 1) as (url,):
        yield url


@dataclass
class Server:
    process: asyncio.subprocess.Process
    address: str


@contextlib.asynccontextmanager
async def running_server(database_url: str, *flags: str) -> AsyncIterator[Server]:
    """`agentstore serve` on `database_url`, in its own process, stopped afterwards."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentstore", "serve", "--listen", "127.0.0.1:0",
        "--database-url", database_url, "--log-level", "INFO", *flags,
        stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert process.stderr is not None
    address = ""
    while line := await process.stderr.readline():
        if match := SERVING_LINE.search(line):
            address = f"{match[1].decode()}:{match[2].decode()}"
            break
    if not address:
        raise RuntimeError("the server did not start")
    drain = asyncio.create_task(process.stderr.read())  # keep the pipe from filling up
    try:
        yield Server(process, address)
    finally:
        process.terminate()
        await process.wait()
        drain.cancel()


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.started = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started


@contextlib.asynccontextmanager
async def running_grpc_baseline(*flags: str) -> AsyncIterator[str]:
    """bench/grpc_baseline.py in its own process, with `flags`; yields its address."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.grpc_baseline", *flags,
        stdout=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert process.stdout is not None
    line = (await process.stdout.readline()).decode()
    if not line.startswith("listening on "):
        process.kill()
        raise RuntimeError("the gRPC baseline server did not start")
    try:
        yield line.removeprefix("listening on ").strip()
    finally:
        process.terminate()
        await process.wait()


class CpuMeter:
    """CPU seconds used between start() and stop() by a server process, by every PostgreSQL
    process on this machine, and by this process; from /proc, so Linux only (elsewhere
    stop() returns nothing). A PostgreSQL process that exits in between is not counted."""

    _TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def __init__(self, server_pid: int) -> None:
        self._server_pid = server_pid
        self._started: dict[str, float] = {}

    def start(self) -> None:
        self._started = self._read()

    def stop(self) -> dict[str, float]:
        now = self._read()
        used = {part: now[part] - self._started.get(part, 0.0) for part in now}
        if used:
            used["all"] = sum(used.values())
        return used

    def _read(self) -> dict[str, float]:
        proc = Path("/proc")
        if not proc.is_dir():
            return {}
        postgres = 0.0
        for entry in proc.iterdir():
            if entry.name.isdigit() and self._comm(entry) == "postgres":
                postgres += self._cpu(entry)
        times = os.times()
        return {
            "server": self._cpu(proc / str(self._server_pid)),
            "PostgreSQL": postgres,
            "client": times.user + times.system,
        }

    @staticmethod
    def _comm(entry: Path) -> str:
        try:
            return (entry / "comm").read_text().strip()
        except OSError:
            return ""

    @classmethod
    def _cpu(cls, entry: Path) -> float:
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            return 0.0
        # Fields after the parenthesised command name; utime and stime are the 14th and 15th.
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / cls._TICKS
