"""OpenAI Agents SDK sessions on agentstore: `AgentstoreSession` implements the SDK's
`Session` protocol, so that `Runner.run(agent, input, session=...)` keeps its history in
agentstore. Needs `openai-agents` (`pip install 'agentstore-client[openai-agents]'`).

    from agentstore.client.openai_agents import AgentstoreSession
    session = AgentstoreSession("conversation-7", target="127.0.0.1:50051", app_name="support",
                                user_id="u-42", api_key=key)
    result = await Runner.run(agent, "Where is my order?", session=session)

Each item is one event (agentstore.client.openai_agents_items: the item whole in `data.item`,
its text searchable); `add_items` is one durable append, `pop_item` one atomic RemoveEvents
of the newest event, `clear_session` one RemoveEvents of all. The session is made by the first
`add_items` (with the app and user given here) and its id is the one given."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Any

from agents.items import TResponseInputItem
from agents.memory.session import SessionABC
from agents.memory.session_settings import SessionSettings, resolve_session_limit

from agentstore.client.async_client import DEFAULT_TARGET, AsyncClient
from agentstore.client.bulk import collector_paused
from agentstore.client.connection import TLS
from agentstore.client.errors import AlreadyExists, NotFound
from agentstore.client.event_data import REMOVAL_NOTICE
from agentstore.client.openai_agents_items import (
    event_from_item,
    item_from_event,
    item_from_message,
)
from agentstore.client.types import Event

__all__ = ["AgentstoreSession"]


class AgentstoreSession(SessionABC):
    """One conversation of the OpenAI Agents SDK, kept in agentstore as a session of
    `app_name` (and `user_id`) whose id is `session_id`."""

    def __init__(
        self,
        session_id: str,
        *,
        target: str | Sequence[str] = DEFAULT_TARGET,
        app_name: str,
        user_id: str | None = None,
        api_key: str | None = None,
        tls: TLS | bool | None = None,
        session_settings: SessionSettings | None = None,
        client: AsyncClient | None = None,
    ) -> None:
        self.session_id = session_id
        self.session_settings = session_settings or SessionSettings()
        self._app_name = app_name
        self._user_id = user_id or ""
        self._owns_client = client is None
        self._client = client or AsyncClient(
            target, api_key=api_key or os.environ.get("AGENTSTORE_API_KEY"), tls=tls
        )

    async def close(self) -> None:
        if self._owns_client:
            await self._client.close()

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The latest `limit` items (default: the session settings' limit, else all), oldest
        first."""
        wanted = resolve_session_limit(limit, self.session_settings)
        if wanted is not None and wanted <= 0:
            return []
        try:
            if wanted is None:
                # The whole history, the fastest way: the replay, converting only each item.
                items: list[Any] = []
                async for batch in self._client.stream_event_batches(self.session_id):
                    with collector_paused():
                        items.extend(
                            item_from_message(m) for m in batch if m.type != REMOVAL_NOTICE
                        )
                return items
            newest_first: list[TResponseInputItem] = []
            async for event in self._client.list_events(
                self.session_id, descending=True, page_size=min(wanted + 8, 1000)
            ):
                if event.type == REMOVAL_NOTICE:
                    continue
                newest_first.append(_item(event))
                if len(newest_first) == wanted:
                    break
        except NotFound:
            return []
        newest_first.reverse()
        return newest_first

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Store the items, in order, in one durable append."""
        if not items:
            return
        events = [event_from_item(dict(item)) for item in items]
        try:
            await self._client.append(self.session_id, events)
        except NotFound:
            await self._create()
            await self._client.append(self.session_id, events)

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove the newest item and return it (None when there is none), atomically: two
        pops never return the same item, and a racing append is never lost."""
        try:
            removed = await self._client.remove_events(self.session_id, newest=True)
        except NotFound:
            return None
        return _item(removed.removed) if removed.removed is not None else None

    async def clear_session(self) -> None:
        """Remove every item (the session stays, and its seqs go on)."""
        try:
            await self._client.remove_events(self.session_id, all=True)
        except NotFound:
            return

    async def _create(self) -> None:
        with contextlib.suppress(AlreadyExists):  # another writer made it first
            await self._client.create_session(
                self._app_name, session_id=self.session_id, user_id=self._user_id
            )


def _item(event: Event) -> Any:
    return item_from_event(event)
