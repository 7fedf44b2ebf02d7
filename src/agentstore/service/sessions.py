"""Session use cases: validation and rules on top of the session repository."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agentstore.domain.callers import Caller
from agentstore.domain.errors import InvalidArgument
from agentstore.domain.ids import new_uuid7
from agentstore.domain.limits import Limits
from agentstore.domain.sessions import (
    NewSession,
    Session,
    SessionFilter,
    SessionPatch,
    StoreStats,
)
from agentstore.service.paging import (
    Page,
    PageSize,
    decode_page_token,
    encode_page_token,
    page_size,
)
from agentstore.service.replays import ReplayCache
from agentstore.service.requests import (
    CreateSessionFields,
    SessionListFields,
    UpdateSessionFields,
)
from agentstore.service.validation import validate, validate_identifier
from agentstore.store.sessions import SessionRepository

__all__ = ["UPDATABLE_FIELDS", "SessionService"]

# The paths UpdateSession's update_mask may name.
UPDATABLE_FIELDS = frozenset({"status", "metadata", "state_delta", "expire_time", "ttl"})
LIST_PAGE = PageSize(default=50, maximum=1000)
REAP_BATCH = 500


class SessionService:
    def __init__(self, repository: SessionRepository, limits: Limits, replays: ReplayCache) -> None:
        self._repository = repository
        self._limits = limits
        # A purged session's events are gone: so is this replica's copy of them.
        self._replays = replays

    async def create(self, caller: Caller, request: CreateSessionFields) -> Session:
        """Create a session; raises `InvalidArgument` and `AlreadyExists`."""
        caller.check_writes()
        fields = {key: value for key, value in request.items() if value is not None}
        new = validate(NewSession, fields, self._limits)
        caller.check_app(new.app_name)
        if new.create_time is not None:
            caller.check_admin("create_time")
        return await self._repository.insert(
            caller.scope,
            session_id=new.session_id or new_uuid7(),
            app_name=new.app_name,
            user_id=new.user_id,
            agent_id=new.agent_id,
            status=new.status,
            metadata=new.metadata,
            state=new.state,
            ttl=new.ttl,
            create_time=new.create_time,
        )

    async def get(
        self, caller: Caller, session_id: str, *, with_state: bool = True, with_scopes: bool = False
    ) -> Session:
        self._check_id("session_id", session_id)
        return await self._repository.get(
            caller.scope, session_id, with_state=with_state, with_scopes=with_scopes
        )

    async def list(
        self,
        caller: Caller,
        request: SessionListFields,
        *,
        page_size_requested: int,
        page_token: str,
        with_state: bool = True,
    ) -> Page[Session]:
        session_filter = validate(SessionFilter, request, self._limits)
        if session_filter.app_name:
            caller.check_app(session_filter.app_name)
        limit = page_size(page_size_requested, LIST_PAGE)
        filters = session_filter.model_dump(mode="json")
        position = decode_page_token(page_token, filters)
        after = None
        if position is not None:
            try:
                after = (datetime.fromisoformat(position[0]), str(position[1]))
            except (ValueError, IndexError, TypeError) as exc:
                raise InvalidArgument.of("page_token", "is malformed") from exc
        sessions = await self._repository.list(
            caller.scope, session_filter, after=after, limit=limit + 1, with_state=with_state
        )

        def token_after(session: Session) -> str:
            return encode_page_token([session.create_time.isoformat(), session.id], filters)

        return Page.of(sessions, limit, token_after)

    async def update(self, caller: Caller, request: UpdateSessionFields) -> Session:
        """Apply UpdateSession; `request["fields"]` holds the paths to change."""
        caller.check_writes()
        unknown = sorted(request["fields"] - UPDATABLE_FIELDS)
        if unknown:
            raise InvalidArgument.of(
                "update_mask",
                f"unknown path {unknown[0]!r}; allowed: {', '.join(sorted(UPDATABLE_FIELDS))}",
            )
        patch = validate(SessionPatch, request, self._limits)
        if not patch.fields:
            raise InvalidArgument.of("update_mask", "names no field to change")
        if "status" in patch.fields and patch.status is None:
            raise InvalidArgument.of("status", "must be set when it is in the update mask")
        if {"expire_time", "ttl"} <= patch.fields and patch.ttl and patch.expire_time:
            raise InvalidArgument.of("ttl", "cannot be combined with expire_time")
        if patch.expire_time is not None and patch.expire_time <= datetime.now(UTC):
            raise InvalidArgument.of("expire_time", "must be in the future")
        return await self._repository.update(caller.scope, patch)

    async def delete(self, caller: Caller, session_id: str, *, purge: bool) -> Session | None:
        """Soft-delete (returning the deleted session) or purge (returning None)."""
        caller.check_writes()
        self._check_id("session_id", session_id)
        if purge:
            await self._repository.purge(caller.scope, session_id)
            self._replays.forget(session_id)
            return None
        return await self._repository.soft_delete(caller.scope, session_id)

    async def undelete(self, caller: Caller, session_id: str) -> Session:
        caller.check_writes()
        self._check_id("session_id", session_id)
        return await self._repository.undelete(caller.scope, session_id)

    async def delete_many(self, caller: Caller, app_name: str, user_id: str, *, purge: bool) -> int:
        caller.check_admin()  # deleting a whole app or user at once
        self._check_id("app_name", app_name)
        caller.check_app(app_name)
        if user_id:
            self._check_id("user_id", user_id)
        return await self._repository.delete_many(caller.scope, app_name, user_id, purge=purge)

    async def store_stats(self, caller: Caller, app_name: str) -> StoreStats:
        if app_name:
            self._check_id("app_name", app_name)
            caller.check_app(app_name)
        return await self._repository.store_stats(caller.scope, app_name)

    async def reap(self, *, expired_grace: timedelta, deleted_retention: timedelta | None) -> int:
        """Purge sessions expired longer than `expired_grace` ago and, when a retention is
        given, sessions soft-deleted longer than it ago, in every app. Returns how many."""
        purged = 0
        while (count := await self._repository.purge_expired(expired_grace, REAP_BATCH)) > 0:
            purged += count
        if deleted_retention is not None:
            while (
                count := await self._repository.purge_deleted(deleted_retention, REAP_BATCH)
            ) > 0:
                purged += count
        return purged

    def _check_id(self, field: str, value: str) -> None:
        validate_identifier(field, value, self._limits)
