"""Event use cases: paged history and per-session stats (appends: service/appends.py)."""

from __future__ import annotations

from collections.abc import Callable

from agentstore.client.event_data import REMOVAL_NOTICE
from agentstore.domain.callers import Caller
from agentstore.domain.errors import InvalidArgument
from agentstore.domain.events import EventFilter, Removal, RemovalOutcome, SessionStats
from agentstore.domain.ids import new_uuid7
from agentstore.domain.limits import Limits
from agentstore.service.event_pages import EventPages
from agentstore.service.paging import (
    MAX_INT64,
    Page,
    PageSize,
    decode_page_token,
    encode_page_token,
    page_size,
)
from agentstore.service.replays import EncodedEvent, ReplayCache
from agentstore.service.requests import EventListFields, RemovalFields
from agentstore.service.validation import validate, validate_identifier
from agentstore.store.events import EventRepository

__all__ = ["EventService"]

LIST_PAGE = PageSize(default=100, maximum=1000)


class EventService:
    def __init__(
        self,
        repository: EventRepository,
        limits: Limits,
        replays: ReplayCache,
        *,
        on_commit: Callable[[list[tuple[str, str]]], None] = lambda changed: None,
    ) -> None:
        self._repository = repository
        self._limits = limits
        # Removed events are erased: so is this replica's copy of the session's replay.
        self._replays = replays
        self._pages = EventPages(repository, replays)
        # Rings followers of the session, here and on other replicas, for the notice.
        self._on_commit = on_commit

    async def remove(self, caller: Caller, request: RemovalFields) -> RemovalOutcome:
        """RemoveEvents: raises `InvalidArgument`, `NotFound`, `ExpectationFailed`."""
        caller.check_writes()
        removal = validate(Removal, request, self._limits)
        if removal.mode == "seqs" and not 1 <= removal.first <= removal.last:
            raise InvalidArgument.of("seqs", "first must be at least 1, and last at least first")
        if removal.mode == "invocation" and not removal.invocation_id:
            raise InvalidArgument.of("from_invocation_id", "must not be empty")
        outcome = await self._repository.remove(
            caller.scope, removal, notice_type=REMOVAL_NOTICE, notice_event_id=new_uuid7()
        )
        if outcome.notice_seq:
            self._replays.forget(removal.session_id)
            self._on_commit([(outcome.app_name, removal.session_id)])
        return outcome

    async def list(
        self,
        caller: Caller,
        request: EventListFields,
        *,
        page_size_requested: int,
        page_token: str,
    ) -> Page[EncodedEvent]:
        event_filter = validate(EventFilter, request, self._limits)
        limit = page_size(page_size_requested, LIST_PAGE)
        filters = event_filter.model_dump(mode="json")
        position = decode_page_token(page_token, filters)
        after = None
        if position is not None:
            if len(position) != 1 or type(position[0]) is not int:
                raise InvalidArgument.of("page_token", "is malformed")
            if not 0 <= position[0] <= MAX_INT64:
                raise InvalidArgument.of("page_token", "is malformed")
            after = position[0]
        events = await self._pages.read(caller.scope, event_filter, after, limit + 1)

        def token_after(event: EncodedEvent) -> str:
            return encode_page_token([event.seq], filters)

        return Page.of(events, limit, token_after)

    async def stats(self, caller: Caller, session_id: str) -> SessionStats:
        validate_identifier("session_id", session_id, self._limits)
        return await self._repository.session_stats(caller.scope, session_id)
