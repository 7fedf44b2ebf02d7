"""`AsyncClient`: every RPC of agentstore in Python terms, for asyncio code."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import grpc
from google.protobuf import field_mask_pb2

from agentstore.client.appender import Appender, append_request
from agentstore.client.connection import TLS, Connection, backoff_seconds
from agentstore.client.convert import (
    duration_from_timedelta,
    struct_from_dict,
    timestamp_from_time,
)
from agentstore.client.errors import (
    AgentstoreError,
    DeadlineExceeded,
    error_from_rpc,
    is_transient,
)
from agentstore.client.types import (
    AppendResult,
    Event,
    RemovalResult,
    ScopedState,
    SearchHit,
    Session,
    SessionStats,
    SessionStatus,
    SessionView,
    StoreStats,
)
from agentstore.v1 import event_pb2
from agentstore.v1 import session_service_pb2 as pb

__all__ = ["AppendWriter", "AsyncClient"]

DEFAULT_TARGET = "127.0.0.1:50051"
# Event types that carry a piece of a message as it is generated; `messages()` leaves them
# out, since the whole message follows them.
PARTIAL_TYPES = frozenset({"llm_stream", "message_delta"})


class AsyncClient:
    """A client of one agentstore deployment (one target, or several replicas to fail over
    between). Use it as an async context manager, or call `close()`.

    Calls that are safe to repeat (reads, and appends, whose events get their ids here before
    the first send) are retried with backoff on UNAVAILABLE; errors are raised as the
    exceptions of `agentstore.client.errors`. `timeout` (seconds) bounds each unary call;
    streams are not bounded."""

    def __init__(
        self,
        target: str | Sequence[str] = DEFAULT_TARGET,
        *,
        api_key: str | None = None,
        tls: TLS | bool | None = None,
        timeout: float | None = 30.0,
        retries: int = 4,
    ) -> None:
        self._connection = Connection(target, api_key=api_key, tls=tls)
        self._timeout = timeout
        self._retries = retries
        self._appender: Appender | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Wait for pending appends to be acknowledged, then close the channels."""
        if self._appender is not None:
            await self._appender.close()
        await self._connection.close()

    # -- sessions --------------------------------------------------------------------------

    async def create_session(
        self,
        app_name: str,
        *,
        session_id: str = "",
        user_id: str = "",
        agent_id: str = "",
        state: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        ttl: timedelta | None = None,
        status: SessionStatus | str | None = None,
        create_time: datetime | None = None,
    ) -> Session:
        """Create a session (with `session_id`, or one the server makes). Raises
        `AlreadyExists` when the id is taken. `create_time` keeps an imported session's time
        (admin keys only)."""
        request = pb.CreateSessionRequest(
            session_id=session_id, app_name=app_name, user_id=user_id, agent_id=agent_id
        )
        if state is not None:
            request.state.CopyFrom(struct_from_dict(state))
        if metadata is not None:
            request.metadata.CopyFrom(struct_from_dict(metadata))
        if ttl is not None:
            request.ttl.CopyFrom(duration_from_timedelta(ttl))
        if status is not None:
            request.status = SessionStatus.parse(status).to_proto()
        if create_time is not None:
            request.create_time.CopyFrom(timestamp_from_time(create_time))
        # Not retried: a create that committed before the connection broke would come back
        # as AlreadyExists.
        return Session.from_proto(await self._call("CreateSession", request, safe=False))

    async def get_session(
        self, session_id: str, *, view: SessionView | str = SessionView.FULL
    ) -> Session:
        """A live session. Raises `NotFound`."""
        request = pb.GetSessionRequest(session_id=session_id, view=SessionView(view).to_proto())
        return Session.from_proto(await self._call("GetSession", request))

    async def list_sessions(
        self,
        app_name: str,
        *,
        user_id: str = "",
        agent_id: str = "",
        status: SessionStatus | str | None = None,
        show_deleted: bool = False,
        view: SessionView | str = SessionView.BASIC,
        page_size: int = 0,
    ) -> AsyncIterator[Session]:
        """Every session of an app (or one user or agent), newest first, over as many pages as
        it takes. Without `view="full"` the sessions come without their state."""
        request = pb.ListSessionsRequest(
            app_name=app_name,
            user_id=user_id,
            agent_id=agent_id,
            show_deleted=show_deleted,
            view=SessionView(view).to_proto(),
            page_size=page_size,
        )
        if status is not None:
            request.status = SessionStatus.parse(status).to_proto()
        async for item in self._pages("ListSessions", request, "sessions"):
            yield Session.from_proto(item)

    async def update_session(
        self,
        session_id: str,
        *,
        status: SessionStatus | str | None = None,
        metadata: Mapping[str, Any] | None = None,
        state_delta: Mapping[str, Any] | None = None,
        expire_time: datetime | None = None,
        ttl: timedelta | None = None,
        never_expire: bool = False,
        expected_version: int | None = None,
    ) -> Session:
        """Change what is given: the status, the metadata (replaced as a whole), the state
        (`state_delta` merged into it; a None value removes its key), the expiry
        (`expire_time`, `ttl` from now, or `never_expire`). With `expected_version`, only if
        the session is at that version (`Conflict` otherwise, carrying the current one)."""
        request = pb.UpdateSessionRequest(session_id=session_id)
        paths = []
        if status is not None:
            request.status = SessionStatus.parse(status).to_proto()
            paths.append("status")
        if metadata is not None:
            request.metadata.CopyFrom(struct_from_dict(metadata))
            paths.append("metadata")
        if state_delta is not None:
            request.state_delta.CopyFrom(struct_from_dict(state_delta))
            paths.append("state_delta")
        if expire_time is not None or never_expire:
            if expire_time is not None:
                request.expire_time.CopyFrom(timestamp_from_time(expire_time))
            paths.append("expire_time")
        if ttl is not None:
            request.ttl.CopyFrom(duration_from_timedelta(ttl))
            paths.append("ttl")
        if not paths:
            raise ValueError("update_session needs at least one thing to change")
        request.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=paths))
        if expected_version is not None:
            request.expected_version = expected_version
        # Retried only when guarded: without a guard a repeat could apply a delta twice.
        return Session.from_proto(
            await self._call("UpdateSession", request, safe=expected_version is not None)
        )

    async def delete_session(self, session_id: str, *, purge: bool = False) -> Session | None:
        """Soft-delete a live session (it can be undeleted until purged) and return it; with
        `purge`, erase it and its events for good (returns None)."""
        response = await self._call(
            "DeleteSession", pb.DeleteSessionRequest(session_id=session_id, purge=purge)
        )
        return Session.from_proto(response.session) if response.HasField("session") else None

    async def undelete_session(self, session_id: str) -> Session:
        """Bring back a soft-deleted session."""
        request = pb.UndeleteSessionRequest(session_id=session_id)
        return Session.from_proto(await self._call("UndeleteSession", request))

    async def delete_sessions(
        self, app_name: str, *, user_id: str = "", purge: bool = False
    ) -> int:
        """Delete every session of an app, or of one of its users; returns how many."""
        request = pb.DeleteSessionsRequest(app_name=app_name, user_id=user_id, purge=purge)
        response = await self._call("DeleteSessions", request)
        return int(response.deleted_count)

    # -- events ----------------------------------------------------------------------------

    async def append(
        self,
        session_id: str,
        events: Iterable[Event | Mapping[str, Any]] | Event | Mapping[str, Any],
        *,
        expected_last_seq: int | None = None,
        keep_times: bool = False,
    ) -> AppendResult:
        """Append events (`Event`s or dicts with the proto's field names) in one all-or-nothing
        transaction; returns once they are durable. Events without an `event_id` get one
        here, so the append is retried safely when the connection breaks. With
        `expected_last_seq`, only if the session's last seq is that (`Conflict` otherwise).
        With `keep_times`, the events' own `create_time`s are kept (an import; admin keys
        only); otherwise the server stamps them with the commit's time. An append the server
        answers UNAVAILABLE (its database did not answer) is sent again, with the same event
        ids, up to the client's `retries` times: stored once however often it is sent. All of
        it within the client's `timeout` (`DeadlineExceeded` past it: the append may still
        commit, and sending it again is safe)."""
        request = self._append_request(session_id, events, expected_last_seq, keep_times)
        try:
            async with asyncio.timeout(self._timeout):
                attempt = 0
                while True:
                    try:
                        return await (await self._appender_of().send(request))
                    except AgentstoreError as error:
                        if not (is_transient(error) and attempt < self._retries):
                            raise
                    await asyncio.sleep(backoff_seconds(attempt))
                    attempt += 1
        except TimeoutError:
            raise DeadlineExceeded(
                f"the append was not acknowledged within {self._timeout:g} s"
            ) from None

    def append_stream(self) -> AppendWriter:
        """A pipelined writer: `await writer.append(...)` returns a future per append at once,
        resolved when that append is durable, so that many appends are in flight together."""
        return AppendWriter(self)

    async def append_events(
        self,
        messages: Iterable[tuple[str, Iterable[Event | Mapping[str, Any]], int | None]],
    ) -> dict[str, int]:
        """The AppendEvents RPC: (session_id, events, expected_last_seq) messages on one
        client stream, each its own transaction; returns each session's last seq. `append`
        is usually the better choice: it says when each append is durable."""
        requests = []
        for session_id, events, expected_last_seq in messages:
            request = pb.AppendEventsRequest(
                session_id=session_id,
                events=append_request(session_id, events, expected_last_seq).events,
            )
            if expected_last_seq is not None:
                request.expected_last_seq = expected_last_seq
            requests.append(request)
        response = await self._call("AppendEvents", iter(requests), streaming_request=True)
        return dict(response.last_seq)

    async def remove_events(
        self,
        session_id: str,
        *,
        newest: bool = False,
        seqs: tuple[int, int] | None = None,
        from_invocation_id: str | None = None,
        all: bool = False,
        expected_last_seq: int | None = None,
    ) -> RemovalResult:
        """Take events back (exactly one of: the `newest`, the `seqs` (first, last), everything
        `from_invocation_id` on, or `all`); they vanish from reads, search and counts, and an
        `events_removed` event tells followers. `newest` returns the removed event: an atomic
        pop. With `expected_last_seq`, only if the session is at that seq (`Conflict`)."""
        request = pb.RemoveEventsRequest(session_id=session_id)
        chosen = [newest, seqs is not None, from_invocation_id is not None, all]
        if sum(chosen) != 1:
            raise ValueError("give exactly one of newest, seqs, from_invocation_id and all")
        if newest:
            request.newest = True
        elif seqs is not None:
            request.seqs.first, request.seqs.last = seqs
        elif from_invocation_id is not None:
            request.from_invocation_id = from_invocation_id
        else:
            request.all = True
        if expected_last_seq is not None:
            request.expected_last_seq = expected_last_seq
        # Not retried: a removal that committed before the connection broke would remove
        # again (unless guarded, which the caller can do with expected_last_seq).
        response = await self._call("RemoveEvents", request, safe=expected_last_seq is not None)
        return RemovalResult.from_proto(response)

    async def list_events(
        self,
        session_id: str,
        *,
        after_seq: int = 0,
        before_seq: int = 0,
        types: Sequence[str] = (),
        author: str = "",
        agent_id: str = "",
        invocation_id: str = "",
        branch: str = "",
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        descending: bool = False,
        page_size: int = 0,
    ) -> AsyncIterator[Event]:
        """A session's events matching every filter given, in seq order (or newest first with
        `descending`), over as many pages as it takes."""
        request = pb.ListEventsRequest(
            session_id=session_id,
            after_seq=after_seq,
            before_seq=before_seq,
            types=types,
            author=author,
            agent_id=agent_id,
            invocation_id=invocation_id,
            branch=branch,
            descending=descending,
            page_size=page_size,
        )
        _set_time_range(request, start_time, end_time)
        async for item in self._pages("ListEvents", request, "events"):
            yield Event.from_proto(item)

    async def stream_events(
        self,
        *,
        session_id: str = "",
        after_seq: int = 0,
        app_name: str = "",
        user_id: str = "",
        agent_id: str = "",
        types: Sequence[str] = (),
        resume_token: str = "",
        follow: bool = False,
    ) -> AsyncIterator[Event]:
        """The StreamEvents RPC as it is: one session's events after `after_seq`, or an app's
        (or user's) feed after `resume_token`; with `follow`, then new events as they commit,
        until the stream breaks. `follow()` is the same, reconnecting by itself."""
        request = _stream_request(
            session_id, after_seq, app_name, user_id, agent_id, types, resume_token, follow
        )
        batches = self._event_batches(request)
        async with contextlib.aclosing(batches):  # a reader that stops early ends the call
            async for batch in batches:
                for message in batch:
                    yield Event.from_proto(message)

    def stream_event_batches(
        self, session_id: str, *, after_seq: int = 0
    ) -> AsyncGenerator[Sequence[event_pb2.Event], None]:
        """A session's events after `after_seq` as stream_events() reads them (no follow),
        without making `Event`s: the protobuf messages as they arrive, the events of each
        response together (up to a thousand), for a reader of a few fields of many events.
        Making an `Event` (its Structs, its time) is most of the client's time in loading a
        long session: an adapter that reads only `data` loads a 5,000-event history a third
        faster this way, and converts a response's events while the server reads and sends
        the next."""
        return self._event_batches(
            _stream_request(session_id, after_seq, "", "", "", (), "", False)
        )

    async def _event_batches(
        self, request: pb.StreamEventsRequest
    ) -> AsyncGenerator[Sequence[event_pb2.Event], None]:
        call = self._connection.stub().StreamEvents(request, metadata=self._connection.metadata)
        try:
            async for response in call:
                if response.events:
                    yield response.events
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None
        finally:
            call.cancel()

    async def follow(
        self,
        *,
        session_id: str = "",
        after_seq: int = 0,
        app_name: str = "",
        user_id: str = "",
        agent_id: str = "",
        types: Sequence[str] = (),
        resume_token: str = "",
        skip_replay: bool = False,
        give_up_after: float | None = 60.0,
    ) -> AsyncIterator[Event]:
        """Replay, then follow live, for ever: one session's events after `after_seq`, or an
        app's (or user's) feed after `resume_token`; with `skip_replay`, only what commits
        from now on. When the connection drops, it reconnects (to the next target, if several
        were given) and resumes right after the last event it yielded, so nothing is lost or
        repeated. Raises `Unavailable` after `give_up_after` seconds without a connection
        (None: never)."""
        failing_since: float | None = None
        attempt = 0
        replaying = skip_replay
        while True:
            # From where the last connection left off.
            request = _stream_request(
                session_id, after_seq, app_name, user_id, agent_id, types, resume_token, True
            )
            call = self._connection.stub().StreamEvents(request, metadata=self._connection.metadata)
            try:
                async for response in call:
                    failing_since, attempt = None, 0
                    for message in response.events:
                        event = Event.from_proto(message)
                        after_seq = event.seq if session_id else after_seq
                        resume_token = event.resume_token or resume_token
                        if not replaying:
                            yield event
                    if response.resume_token:
                        resume_token = response.resume_token
                    if response.caught_up:
                        replaying = False
            except grpc.RpcError as exc:
                error = error_from_rpc(exc)
                if not is_transient(error):
                    raise error from None
                now = time.monotonic()
                failing_since = failing_since or now
                if give_up_after is not None and now - failing_since > give_up_after:
                    raise error from None
            finally:
                call.cancel()
            self._connection.rotate()
            await asyncio.sleep(backoff_seconds(attempt))
            attempt += 1

    async def messages(self, session_id: str) -> list[dict[str, str]]:
        """The session's history as chat messages, `{"role": ..., "content": ...}` in order,
        ready to hand to a model: every event with text content, except the pieces of a
        message streamed before it (`llm_stream`, `message_delta`)."""
        return [
            {"role": event.content.role, "content": event.content.text}
            async for event in self.stream_events(session_id=session_id)
            if event.content is not None and event.content.text and event.type not in PARTIAL_TYPES
        ]

    # -- search and stats ------------------------------------------------------------------

    async def search(
        self,
        query: str,
        *,
        app_name: str = "",
        user_id: str = "",
        agent_id: str = "",
        session_id: str = "",
        types: Sequence[str] = (),
        author: str = "",
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        page_size: int = 0,
    ) -> AsyncIterator[SearchHit]:
        """Events whose text matches `query` (English, Chinese or Japanese; `"a phrase"`,
        `-word`, `or`), best first, over as many pages as it takes."""
        request = pb.SearchRequest(
            query=query,
            app_name=app_name,
            user_id=user_id,
            agent_id=agent_id,
            session_id=session_id,
            types=types,
            author=author,
            page_size=page_size,
        )
        _set_time_range(request, start_time, end_time)
        async for item in self._pages("Search", request, "hits"):
            yield SearchHit.from_proto(item)

    async def get_state(self, app_name: str, user_id: str = "") -> ScopedState:
        """The state of an app, or of one of its users, shared by their sessions."""
        request = pb.GetStateRequest(app_name=app_name, user_id=user_id)
        return ScopedState.from_proto(await self._call("GetState", request))

    async def update_state(
        self,
        app_name: str,
        user_id: str = "",
        *,
        state_delta: Mapping[str, Any],
        expected_version: int | None = None,
    ) -> ScopedState:
        """Merge `state_delta` into the state of an app, or of one of its users (a None value
        removes its key); with `expected_version`, only at that version (`Conflict`)."""
        request = pb.UpdateStateRequest(
            app_name=app_name, user_id=user_id, state_delta=struct_from_dict(state_delta)
        )
        if expected_version is not None:
            request.expected_version = expected_version
        return ScopedState.from_proto(
            await self._call("UpdateState", request, safe=expected_version is not None)
        )

    async def get_session_stats(self, session_id: str) -> SessionStats:
        request = pb.GetSessionStatsRequest(session_id=session_id)
        return SessionStats.from_proto(await self._call("GetSessionStats", request))

    async def get_store_stats(self, app_name: str = "") -> StoreStats:
        request = pb.GetStoreStatsRequest(app_name=app_name)
        return StoreStats.from_proto(await self._call("GetStoreStats", request))

    # -- plumbing --------------------------------------------------------------------------

    async def _send_append(
        self,
        session_id: str,
        events: Iterable[Event | Mapping[str, Any]] | Event | Mapping[str, Any],
        expected_last_seq: int | None,
        keep_times: bool = False,
    ) -> asyncio.Future[AppendResult]:
        request = self._append_request(session_id, events, expected_last_seq, keep_times)
        return await self._appender_of().send(request)

    @staticmethod
    def _append_request(
        session_id: str,
        events: Iterable[Event | Mapping[str, Any]] | Event | Mapping[str, Any],
        expected_last_seq: int | None,
        keep_times: bool,
    ) -> pb.AppendStreamRequest:
        """The request, its events' ids made here when missing (so a resend is safe)."""
        if isinstance(events, Event | Mapping):
            events = [events]
        return append_request(session_id, events, expected_last_seq, keep_times=keep_times)

    def _appender_of(self) -> Appender:
        if self._appender is None:
            self._appender = Appender(self._connection)
        return self._appender

    async def _pages(self, method: str, request: Any, items: str) -> AsyncIterator[Any]:
        """The `items` of every page of a paged call, following next_page_token."""
        while True:
            page = await self._call(method, request)
            for item in getattr(page, items):
                yield item
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    async def _call(
        self,
        method: str,
        request: Any,
        *,
        safe: bool = True,
        streaming_request: bool = False,
    ) -> Any:
        """One unary (or client-streaming) call, retried on UNAVAILABLE when `safe`."""
        attempt = 0
        while True:
            rpc = getattr(self._connection.stub(), method)
            try:
                return await rpc(request, timeout=self._timeout, metadata=self._connection.metadata)
            except grpc.RpcError as exc:
                error = error_from_rpc(exc)
                if not (
                    is_transient(error)
                    and safe
                    and not streaming_request
                    and attempt < self._retries
                ):
                    raise error from None
            self._connection.rotate()
            await asyncio.sleep(backoff_seconds(attempt))
            attempt += 1


def _stream_request(
    session_id: str,
    after_seq: int,
    app_name: str,
    user_id: str,
    agent_id: str,
    types: Sequence[str],
    resume_token: str,
    follow: bool,
) -> pb.StreamEventsRequest:
    return pb.StreamEventsRequest(
        session_id=session_id,
        after_seq=after_seq,
        app_name=app_name,
        user_id=user_id,
        agent_id=agent_id,
        types=types,
        resume_token=resume_token,
        follow=follow,
    )


def _set_time_range(request: Any, start_time: datetime | None, end_time: datetime | None) -> None:
    if start_time is not None:
        request.start_time.CopyFrom(timestamp_from_time(start_time))
    if end_time is not None:
        request.end_time.CopyFrom(timestamp_from_time(end_time))


class AppendWriter:
    """Many appends in flight on one stream. Use as an async context manager; leaving it waits
    until every append is durable (or failed)."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._futures: list[asyncio.Future[AppendResult]] = []

    async def __aenter__(self) -> AppendWriter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.flush()

    async def append(
        self,
        session_id: str,
        events: Iterable[Event | Mapping[str, Any]] | Event | Mapping[str, Any],
        *,
        expected_last_seq: int | None = None,
        keep_times: bool = False,
    ) -> asyncio.Future[AppendResult]:
        """Send an append; the returned future resolves once it is durable (or raises its
        error). Appends to one session commit in the order they were sent."""
        future = await self._client._send_append(session_id, events, expected_last_seq, keep_times)
        self._futures.append(future)
        return future

    async def flush(self) -> list[AppendResult | BaseException]:
        """Wait for every append sent so far; their results (or errors) in order."""
        futures, self._futures = self._futures, []
        return list(await asyncio.gather(*futures, return_exceptions=True))
