"""Appends over one long-lived AppendStream: each request gets a future that resolves once the
server has committed it (or failed it), and many may be in flight.

Every event carries an `event_id` made here before its first send, so a request whose stream
broke before its acknowledgement is resent on a new stream without risk: events the server
stored already come back as duplicates with their stored seqs, and a resent
`expected_last_seq` is only checked when something in the request is new."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import grpc

from agentstore.client.connection import Connection, backoff_seconds
from agentstore.client.errors import (
    AgentstoreError,
    Unavailable,
    error_from_rpc,
    error_from_status,
    is_transient,
)
from agentstore.client.ids import new_uuid7
from agentstore.client.types import AppendResult, Event, event_to_proto
from agentstore.v1 import session_service_pb2 as pb

__all__ = ["Appender", "append_request"]

# How many times in a row a broken stream is reopened before pending appends fail.
REOPEN_ATTEMPTS = 6


def append_request(
    session_id: str,
    events: Iterable[Event | Mapping[str, Any]],
    expected_last_seq: int | None,
    *,
    keep_times: bool = False,
) -> pb.AppendStreamRequest:
    """The request for an append, each event given an id if it has none; with `keep_times`,
    the events' own create_times are sent to be kept."""
    request = pb.AppendStreamRequest(session_id=session_id)
    for event in events:
        message = event_to_proto(event, keep_time=keep_times)
        if not message.event_id:
            message.event_id = new_uuid7()
        request.events.append(message)
    if expected_last_seq is not None:
        request.expected_last_seq = expected_last_seq
    return request


@dataclass
class _Pending:
    request: pb.AppendStreamRequest
    result: asyncio.Future[AppendResult]


class Appender:
    """The client's AppendStream, opened on first use and reopened (with every unacknowledged
    request resent, in order) when its connection breaks (see errors.is_transient)."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._call: grpc.aio.StreamStreamCall[Any, Any] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: deque[_Pending] = deque()
        self._lock = asyncio.Lock()  # one writer at a time; reopening holds it too
        self._request_ids = itertools.count(1)

    async def send(self, request: pb.AppendStreamRequest) -> asyncio.Future[AppendResult]:
        """Send one request; the future resolves with its result or its error."""
        request.request_id = str(next(self._request_ids))
        pending = _Pending(request, asyncio.get_running_loop().create_future())
        async with self._lock:
            self._pending.append(pending)
            if self._call is None:
                await self._open()
            else:
                # On a broken (or already finished) stream the reader reopens it and resends
                # what is pending.
                with contextlib.suppress(grpc.RpcError, asyncio.InvalidStateError):
                    await self._write(request)
        return pending.result

    async def close(self) -> None:
        """Wait for every pending acknowledgement, then end the stream."""
        async with self._lock:
            call, reader = self._call, self._reader
            if call is not None:
                with contextlib.suppress(grpc.RpcError, asyncio.InvalidStateError):
                    await call.done_writing()
        if reader is not None:
            await asyncio.gather(reader, return_exceptions=True)
        self._call = self._reader = None

    async def _write(self, request: pb.AppendStreamRequest) -> None:
        assert self._call is not None
        await self._call.write(request)

    async def _open(self, failures: int = 0) -> None:
        """Open a stream and send every pending request on it. Called with the lock held;
        `failures` counts the streams that broke in a row before this one."""
        call = self._connection.stub().AppendStream(metadata=self._connection.metadata)
        self._call = call
        self._reader = asyncio.create_task(
            self._read(call, failures), name="agentstore-append-acks"
        )
        for pending in list(self._pending):
            try:
                await call.write(pending.request)
            except (grpc.RpcError, asyncio.InvalidStateError):
                break  # the reader reopens

    async def _read(self, call: grpc.aio.StreamStreamCall[Any, Any], failures: int) -> None:
        while True:
            try:
                response = await call.read()
            except grpc.RpcError as exc:
                error = error_from_rpc(exc)
                break
            if response is grpc.aio.EOF:
                error = Unavailable("the append stream ended before acknowledging everything")
                break
            failures = 0
            self._resolve(cast(pb.AppendStreamResponse, response))
        async with self._lock:
            if self._call is not call:
                return
            self._call = self._reader = None
            if not self._pending:
                return
            if is_transient(error) and failures < REOPEN_ATTEMPTS:
                await asyncio.sleep(backoff_seconds(failures))
                self._connection.rotate()
                await self._open(failures + 1)  # the new stream's reader takes over
                return
            self._fail_pending(error)

    def _resolve(self, response: pb.AppendStreamResponse) -> None:
        if not self._pending:
            return
        pending = self._pending.popleft()
        if pending.result.done():  # the caller gave up waiting
            return
        if response.HasField("error"):
            pending.result.set_exception(error_from_status(response.error))
            return
        pending.result.set_result(
            AppendResult(
                appended=response.appended,
                duplicates=response.duplicates,
                seqs=tuple(response.seqs),
                last_seq=response.last_seq,
                version=response.version,
            )
        )

    def _fail_pending(self, error: AgentstoreError) -> None:
        while self._pending:
            pending = self._pending.popleft()
            if not pending.result.done():
                pending.result.set_exception(error)
