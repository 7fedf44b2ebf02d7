"""Helpers for tests: URLs, error details, and waiting for a subprocess server."""

from __future__ import annotations

import asyncio
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

SERVING_LINE = re.compile(rb"agentstore serving on (\S+):(\d+)")


def with_database(url: str, name: str) -> str:
    """`url` with its database replaced by `name`."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@dataclass
class ErrorDetails:
    code: grpc.StatusCode
    reason: str
    metadata: dict[str, str]
    fields: dict[str, str]


def error_details(error: grpc.aio.AioRpcError) -> ErrorDetails:
    """The code, ErrorInfo reason and metadata, and BadRequest field violations of an error."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    reason, metadata, fields = "", {}, {}
    for detail in status.details if status else []:
        info = error_details_pb2.ErrorInfo()
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(info):
            reason, metadata = info.reason, dict(info.metadata)
        elif detail.Unpack(bad_request):
            fields = {v.field: v.description for v in bad_request.field_violations}
    return ErrorDetails(error.code(), reason, metadata, fields)


async def expect_error(call: object, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    """The error an awaited call fails with, checked to have `code`."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code() == code, caught.value.details()
    return caught.value


async def run_agentstore(*args: str, within: float = 60.0) -> tuple[int, bytes, bytes]:
    """`agentstore ARGS...` to completion: exit code, stdout, stderr (killed if it overruns)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentstore", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), within)
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode is not None
    return process.returncode, stdout, stderr


class ServerProcess:
    """`agentstore serve` in a subprocess: started, waited on until it serves, stopped."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.process: asyncio.subprocess.Process | None = None
        self.address = ""
        self.log = b""
        self._reading: asyncio.Task[None] | None = None

    async def start(self, within: float = 60.0) -> str:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agentstore",
            "serve",
            "--listen",
            "127.0.0.1:0",
            *self.args,
            stderr=asyncio.subprocess.PIPE,
            cwd=Path(__file__).parent.parent,
        )
        self.address = await asyncio.wait_for(self._wait_serving(), within)
        # Read the log as it comes: a full pipe would block the server's next log line.
        self._reading = asyncio.create_task(self._read_log())
        return self.address

    async def _read_log(self) -> None:
        assert self.process is not None
        assert self.process.stderr is not None
        while chunk := await self.process.stderr.read(65536):
            self.log += chunk

    async def _wait_serving(self) -> str:
        assert self.process is not None
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self.log += line
            if match := SERVING_LINE.search(line):
                return f"{match[1].decode()}:{match[2].decode()}"
        raise AssertionError(f"server exited before serving:\n{self.log.decode()}")

    async def stop(self, within: float = 30.0) -> int:
        """SIGTERM, then the exit code."""
        assert self.process is not None
        self.process.terminate()
        return await self.exited(within)

    async def exited(self, within: float = 30.0) -> int:
        """The exit code, once the process has ended (told to stop by someone else)."""
        assert self.process is not None
        if self._reading is not None:
            await asyncio.wait_for(self._reading, within)
        return await asyncio.wait_for(self.process.wait(), within)
