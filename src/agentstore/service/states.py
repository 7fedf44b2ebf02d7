"""The state of an app, or of one user of an app: GetState and UpdateState. Events change
these states too, in their append's transaction (service/appends.py)."""

from __future__ import annotations

from agentstore.domain.callers import Caller
from agentstore.domain.limits import Limits
from agentstore.domain.sessions import ScopedState, StatePatch
from agentstore.service.requests import UpdateStateFields
from agentstore.service.validation import validate, validate_identifier
from agentstore.store.states import StateRepository

__all__ = ["StateService"]


class StateService:
    def __init__(self, repository: StateRepository, limits: Limits) -> None:
        self._repository = repository
        self._limits = limits

    async def get(self, caller: Caller, app_name: str, user_id: str) -> ScopedState:
        validate_identifier("app_name", app_name, self._limits)
        if user_id:
            validate_identifier("user_id", user_id, self._limits)
        caller.check_app(app_name)
        return await self._repository.get(caller.scope, app_name, user_id)

    async def update(self, caller: Caller, request: UpdateStateFields) -> ScopedState:
        caller.check_writes()
        patch = validate(StatePatch, request, self._limits)
        caller.check_app(patch.app_name)
        return await self._repository.update(caller.scope, patch)
