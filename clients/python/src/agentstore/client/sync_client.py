"""`Client`: the synchronous twin of `AsyncClient`, same methods, for code without asyncio.

It runs an `AsyncClient` on an event loop of its own in a background thread, so the two
behave the same (retries, reconnects, errors) by construction."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from datetime import datetime, timedelta
from typing import Any, TypeVar

from agentstore.client.async_client import DEFAULT_TARGET, AsyncClient
from agentstore.client.connection import TLS
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

__all__ = ["Client"]

T = TypeVar("T")


class Client:
    """A client of one agentstore deployment; see `AsyncClient` for every method. Use it as a
    context manager, or call `close()`."""

    def __init__(
        self,
        target: str | Sequence[str] = DEFAULT_TARGET,
        *,
        api_key: str | None = None,
        tls: TLS | bool | None = None,
        timeout: float | None = 30.0,
        retries: int = 4,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="agentstore-client", daemon=True
        )
        self._thread.start()
        self._client = AsyncClient(
            target, api_key=api_key, tls=tls, timeout=timeout, retries=retries
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Wait for pending appends, close the channels and stop the background loop."""
        if self._loop.is_closed():
            return
        try:
            self._run(self._client.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _iterate(self, iterator: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self._run(anext(iterator))  # type: ignore[arg-type]
                except StopAsyncIteration:
                    return
        finally:
            # Leaving early (break, an exception) closes the stream or page walk.
            if not self._loop.is_closed():
                self._run(iterator.aclose())  # type: ignore[attr-defined]

    # -- sessions --------------------------------------------------------------------------

    def create_session(
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
        return self._run(
            self._client.create_session(
                app_name,
                session_id=session_id,
                user_id=user_id,
                agent_id=agent_id,
                state=state,
                metadata=metadata,
                ttl=ttl,
                status=status,
                create_time=create_time,
            )
        )

    def get_session(
        self, session_id: str, *, view: SessionView | str = SessionView.FULL
    ) -> Session:
        return self._run(self._client.get_session(session_id, view=view))

    def list_sessions(
        self,
        app_name: str,
        *,
        user_id: str = "",
        agent_id: str = "",
        status: SessionStatus | str | None = None,
        show_deleted: bool = False,
        view: SessionView | str = SessionView.BASIC,
        page_size: int = 0,
    ) -> Iterator[Session]:
        return self._iterate(
            self._client.list_sessions(
                app_name,
                user_id=user_id,
                agent_id=agent_id,
                status=status,
                show_deleted=show_deleted,
                view=view,
                page_size=page_size,
            )
        )

    def update_session(
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
        return self._run(
            self._client.update_session(
                session_id,
                status=status,
                metadata=metadata,
                state_delta=state_delta,
                expire_time=expire_time,
                ttl=ttl,
                never_expire=never_expire,
                expected_version=expected_version,
            )
        )

    def delete_session(self, session_id: str, *, purge: bool = False) -> Session | None:
        return self._run(self._client.delete_session(session_id, purge=purge))

    def undelete_session(self, session_id: str) -> Session:
        return self._run(self._client.undelete_session(session_id))

    def delete_sessions(self, app_name: str, *, user_id: str = "", purge: bool = False) -> int:
        return self._run(self._client.delete_sessions(app_name, user_id=user_id, purge=purge))

    # -- events ----------------------------------------------------------------------------

    def append(
        self,
        session_id: str,
        events: Iterable[Event | Mapping[str, Any]] | Event | Mapping[str, Any],
        *,
        expected_last_seq: int | None = None,
        keep_times: bool = False,
    ) -> AppendResult:
        return self._run(
            self._client.append(
                session_id, events, expected_last_seq=expected_last_seq, keep_times=keep_times
            )
        )

    def append_async(
        self,
        session_id: str,
        events: Iterable[Event | Mapping[str, Any]] | Event | Mapping[str, Any],
        *,
        expected_last_seq: int | None = None,
    ) -> Future[AppendResult]:
        """The pipelined writer of the synchronous client: sends at once and returns a
        `concurrent.futures.Future` that resolves when the append is durable."""
        return asyncio.run_coroutine_threadsafe(
            self._client.append(session_id, events, expected_last_seq=expected_last_seq),
            self._loop,
        )

    def append_events(
        self,
        messages: Iterable[tuple[str, Iterable[Event | Mapping[str, Any]], int | None]],
    ) -> dict[str, int]:
        return self._run(self._client.append_events(messages))

    def remove_events(
        self,
        session_id: str,
        *,
        newest: bool = False,
        seqs: tuple[int, int] | None = None,
        from_invocation_id: str | None = None,
        all: bool = False,
        expected_last_seq: int | None = None,
    ) -> RemovalResult:
        return self._run(
            self._client.remove_events(
                session_id,
                newest=newest,
                seqs=seqs,
                from_invocation_id=from_invocation_id,
                all=all,
                expected_last_seq=expected_last_seq,
            )
        )

    def list_events(
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
    ) -> Iterator[Event]:
        return self._iterate(
            self._client.list_events(
                session_id,
                after_seq=after_seq,
                before_seq=before_seq,
                types=types,
                author=author,
                agent_id=agent_id,
                invocation_id=invocation_id,
                branch=branch,
                start_time=start_time,
                end_time=end_time,
                descending=descending,
                page_size=page_size,
            )
        )

    def stream_events(
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
    ) -> Iterator[Event]:
        return self._iterate(
            self._client.stream_events(
                session_id=session_id,
                after_seq=after_seq,
                app_name=app_name,
                user_id=user_id,
                agent_id=agent_id,
                types=types,
                resume_token=resume_token,
                follow=follow,
            )
        )

    def follow(
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
    ) -> Iterator[Event]:
        return self._iterate(
            self._client.follow(
                session_id=session_id,
                after_seq=after_seq,
                app_name=app_name,
                user_id=user_id,
                agent_id=agent_id,
                types=types,
                resume_token=resume_token,
                skip_replay=skip_replay,
                give_up_after=give_up_after,
            )
        )

    def messages(self, session_id: str) -> list[dict[str, str]]:
        return self._run(self._client.messages(session_id))

    # -- search and stats ------------------------------------------------------------------

    def search(
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
    ) -> Iterator[SearchHit]:
        return self._iterate(
            self._client.search(
                query,
                app_name=app_name,
                user_id=user_id,
                agent_id=agent_id,
                session_id=session_id,
                types=types,
                author=author,
                start_time=start_time,
                end_time=end_time,
                page_size=page_size,
            )
        )

    def get_state(self, app_name: str, user_id: str = "") -> ScopedState:
        return self._run(self._client.get_state(app_name, user_id))

    def update_state(
        self,
        app_name: str,
        user_id: str = "",
        *,
        state_delta: Mapping[str, Any],
        expected_version: int | None = None,
    ) -> ScopedState:
        return self._run(
            self._client.update_state(
                app_name, user_id, state_delta=state_delta, expected_version=expected_version
            )
        )

    def get_session_stats(self, session_id: str) -> SessionStats:
        return self._run(self._client.get_session_stats(session_id))

    def get_store_stats(self, app_name: str = "") -> StoreStats:
        return self._run(self._client.get_store_stats(app_name))
