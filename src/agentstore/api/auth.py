"""Who makes a call: the one place that turns a call's metadata into a Caller.

With `--auth none` every call is ANONYMOUS (every app, every right). With `--auth api-key`
every call of the session service needs `authorization: Bearer <key>`; health and reflection
are other services and stay open."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from agentstore.domain.callers import ANONYMOUS, Caller
from agentstore.service.keys import KeyService

__all__ = ["Authenticator"]


class Authenticator:
    def __init__(self, keys: KeyService | None) -> None:
        """`keys` checks API keys; None: no authentication."""
        self._keys = keys

    async def caller_of(self, context: grpc.aio.ServicerContext[Any, Any]) -> Caller:
        """Raises `Unauthenticated` for a call without a valid key, when keys are required."""
        if self._keys is None:
            return ANONYMOUS
        authorization = None
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                authorization = value if isinstance(value, str) else value.decode()
        return await self._keys.authenticate(authorization)

    def recheck(self, caller: Caller) -> Callable[[], Awaitable[None]] | None:
        """For a long-lived call: what raises `Unauthenticated` once the caller's key is
        revoked or expired; None when there is nothing to recheck."""
        keys = self._keys
        if keys is None or caller is ANONYMOUS:
            return None
        return functools.partial(keys.recheck, caller)
