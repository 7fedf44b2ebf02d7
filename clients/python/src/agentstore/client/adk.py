"""Google ADK's session service on agentstore: `AgentstoreSessionService` implements ADK's
`BaseSessionService`, so that an ADK `Runner` (or `adk web`) keeps its sessions in agentstore.
Needs `google-adk` (`pip install 'agentstore-client[adk]'`).

    from agentstore.client.adk import AgentstoreSessionService
    runner = Runner(agent=agent, app_name="support", session_service=AgentstoreSessionService(
        "127.0.0.1:50051", api_key=key))

Importing this module registers the URI scheme `agentstore://HOST:PORT` in ADK's service
registry, for `adk web --session_service_uri agentstore://127.0.0.1:50051` (the key from
AGENTSTORE_API_KEY).

How ADK's data maps onto agentstore's is agentstore.client.adk_events: one agentstore session
per ADK (app, user, session id), one event per ADK event (kept field for field), `app:` and
`user:` state keys in agentstore's app and user state, `temp:` keys never stored. Each append
is guarded by the seq the session object was read at, so a writer holding an old copy gets
ADK's `StaleSessionError` instead of overwriting; writers of different sessions never do.

Differences from ADK's own services: a state key set to None is removed (agentstore's rule),
where ADK keeps it with the value None; app and user state given to `create_session` are
written after the session, not in its transaction."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events import Event as AdkEvent
from google.adk.sessions import Session
from google.adk.sessions.base_session_service import (
    BaseSessionService,
    GetSessionConfig,
    ListSessionsResponse,
)
from typing_extensions import override

from agentstore.client.adk_events import (
    adk_event_from_event,
    adk_event_from_message,
    event_from_adk_event,
    merged_state,
    session_key,
    split_state,
)
from agentstore.client.async_client import DEFAULT_TARGET, AsyncClient
from agentstore.client.bulk import collector_paused
from agentstore.client.connection import TLS
from agentstore.client.errors import AlreadyExists, Conflict, NotFound
from agentstore.client.ids import new_uuid7
from agentstore.client.types import Session as StoredSession

try:  # ADK 2.x's name for the error of a stale session object
    from google.adk.errors._stale_session_error import StaleSessionError
except ImportError:  # pragma: no cover - older ADK: its database service raised ValueError
    StaleSessionError = ValueError  # type: ignore[assignment,misc]

__all__ = ["AgentstoreSessionService"]

SCHEME = "agentstore"
# The ADK session id, kept in the agentstore session's metadata (its id is session_key()).
ADK_SESSION_ID = "adk_session_id"
# ADK event timestamps come from the agent's clock, agentstore's times from the server's:
# `after_timestamp` asks the server for a little more and filters exactly here.
CLOCK_SKEW = timedelta(minutes=5)


class AgentstoreSessionService(BaseSessionService):
    """ADK sessions in agentstore. `target` is the server (or several replicas); without it,
    `uri` (`agentstore://HOST:PORT`, as ADK's service registry passes it) or the default."""

    def __init__(
        self,
        target: str | Sequence[str] | None = None,
        *,
        api_key: str | None = None,
        tls: TLS | bool | None = None,
        uri: str | None = None,
        **_registry_options: Any,
    ) -> None:
        if target is None:
            target = (urlparse(uri).netloc if uri else "") or DEFAULT_TARGET
        self._client = AsyncClient(
            target, api_key=api_key or os.environ.get("AGENTSTORE_API_KEY"), tls=tls
        )

    async def close(self) -> None:
        await self._client.close()

    @override
    async def create_session(
        self,
        *,
        app_name: str,
        user_id: str,
        state: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> Session:
        adk_id = session_id.strip() if session_id and session_id.strip() else new_uuid7()
        scopes = split_state(dict(state or {}))
        try:
            await self._client.create_session(
                app_name,
                session_id=session_key(app_name, user_id, adk_id),
                user_id=user_id,
                state=scopes.state_delta,
                metadata={ADK_SESSION_ID: adk_id},
            )
        except AlreadyExists:
            raise AlreadyExistsError(f"Session with id {adk_id} already exists.") from None
        if scopes.app_state_delta:
            await self._client.update_state(app_name, state_delta=scopes.app_state_delta)
        if scopes.user_state_delta:
            await self._client.update_state(app_name, user_id, state_delta=scopes.user_state_delta)
        stored = await self._client.get_session(
            session_key(app_name, user_id, adk_id), view="scoped"
        )
        return _adk_session(stored, adk_id, [])

    @override
    async def get_session(
        self,
        *,
        app_name: str,
        user_id: str,
        session_id: str,
        config: GetSessionConfig | None = None,
    ) -> Session | None:
        key = session_key(app_name, user_id, session_id)
        try:
            stored = await self._client.get_session(key, view="scoped")
        except NotFound:
            return None
        if (stored.app_name, stored.user_id) != (app_name, user_id):
            return None
        events = await self._events(key, config)
        return _adk_session(stored, session_id, events)

    async def _events(self, key: str, config: GetSessionConfig | None) -> list[AdkEvent]:
        recent = config.num_recent_events if config else None
        after = config.after_timestamp if config else None
        if recent == 0:
            return []
        if recent is None and after is None:
            # The whole history, the fastest way: the replay, converting only each ADK event,
            # a response's events at a time while the server sends the next.
            events: list[AdkEvent] = []
            async for batch in self._client.stream_event_batches(key):
                with collector_paused():
                    events.extend(adk_event_from_message(message) for message in batch)
            return events
        start = None
        if after is not None:
            start = datetime.fromtimestamp(after, UTC) - CLOCK_SKEW
        newest_first: list[AdkEvent] = []
        async for event in self._client.list_events(
            key, descending=True, start_time=start, page_size=min(recent or 1000, 1000)
        ):
            adk_event = adk_event_from_event(event)
            if after is not None and adk_event.timestamp < after:
                continue
            newest_first.append(adk_event)
            if recent is not None and len(newest_first) == recent:
                break
        newest_first.reverse()
        return newest_first

    @override
    async def list_sessions(
        self, *, app_name: str, user_id: str | None = None
    ) -> ListSessionsResponse:
        app_state = (await self._client.get_state(app_name)).state
        user_states: dict[str, dict[str, Any]] = {}
        sessions = []
        async for stored in self._client.list_sessions(
            app_name, user_id=user_id or "", view="full"
        ):
            adk_id = stored.metadata.get(ADK_SESSION_ID)
            if not isinstance(adk_id, str):
                continue  # not a session made through ADK
            if stored.user_id not in user_states:
                user_states[stored.user_id] = (
                    await self._client.get_state(app_name, stored.user_id)
                ).state
            with_scopes = _with_scopes(stored, app_state, user_states[stored.user_id])
            sessions.append(_adk_session(with_scopes, adk_id, []))
        sessions.sort(key=lambda session: session.last_update_time)
        return ListSessionsResponse(sessions=sessions)

    @override
    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        # As ADK's database service: deleting what is not there is no error.
        with contextlib.suppress(NotFound):
            await self._client.delete_session(
                session_key(app_name, user_id, session_id), purge=True
            )

    @override
    async def get_user_state(self, *, app_name: str, user_id: str) -> dict[str, Any]:
        return (await self._client.get_state(app_name, user_id)).state

    @override
    async def append_event(self, session: Session, event: AdkEvent) -> AdkEvent:
        if event.partial:
            return event
        self._apply_temp_state(session, event)
        event = self._trim_temp_delta_state(event)
        if not event.id:
            event.id = AdkEvent.new_id()
        marker = session._storage_update_marker
        try:
            result = await self._client.append(
                session_key(session.app_name, session.user_id, session.id),
                event_from_adk_event(event),
                expected_last_seq=int(marker) if marker is not None else None,
            )
        except Conflict:
            raise StaleSessionError(
                f"Session {session.id} was changed by another writer since it was read;"
                " read it again with get_session and retry."
            ) from None
        except NotFound:
            raise SessionNotFoundError(f"Session {session.id} not found.") from None
        session._storage_update_marker = str(result.last_seq)
        session.last_update_time = event.timestamp
        return self._commit_event_to_session(session, event)


def _with_scopes(
    stored: StoredSession, app_state: dict[str, Any], user_state: dict[str, Any]
) -> StoredSession:
    return dataclasses.replace(stored, app_state=app_state, user_state=user_state)


def _adk_session(stored: StoredSession, adk_id: str, events: list[AdkEvent]) -> Session:
    changed = stored.last_event_time or stored.create_time
    session = Session(
        id=adk_id,
        app_name=stored.app_name,
        user_id=stored.user_id,
        state=merged_state(stored.state, stored.app_state, stored.user_state),
        events=events,
        last_update_time=changed.timestamp() if changed else 0.0,
    )
    # The seq this copy was read at: the guard of its next append (see append_event).
    session._storage_update_marker = str(stored.last_seq)
    return session


def _registry_factory(uri: str, **options: Any) -> AgentstoreSessionService:
    return AgentstoreSessionService(uri=uri, **options)


def _register() -> None:
    try:
        from google.adk.cli.service_registry import get_service_registry
    except ImportError:  # pragma: no cover - an ADK without the CLI's registry
        return
    get_service_registry().register_session_service(SCHEME, _registry_factory)


_register()
