"""API keys: making, listing and revoking them, and telling who a presented key is.

A verified key is remembered for at most REMEMBER_SECONDS, so that most calls cost no database
lookup, while a revoked key stops working within that time on every replica."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from agentstore.domain.callers import Caller, Role, Scope
from agentstore.domain.errors import InvalidArgument, Unauthenticated
from agentstore.domain.keys import ApiKey, hash_key, looks_like_key, new_key, new_key_id
from agentstore.domain.limits import Limits
from agentstore.service.validation import validate_identifier
from agentstore.store.keys import KeyRepository

__all__ = ["REMEMBER_SECONDS", "UNAUTHENTICATED", "KeyService"]

REMEMBER_SECONDS = 1.0
# One answer for a missing, malformed, unknown, revoked or expired key: nothing to tell apart.
UNAUTHENTICATED = "a valid API key is required: authorization: Bearer <key>"


def _unauthenticated() -> Unauthenticated:
    return Unauthenticated(UNAUTHENTICATED, reason="UNAUTHENTICATED")


class KeyService:
    def __init__(self, repository: KeyRepository, limits: Limits) -> None:
        self._repository = repository
        self._limits = limits
        # key hash -> (caller, monotonic time it was looked up)
        self._remembered: dict[bytes, tuple[Caller | None, float]] = {}
        # key id -> (still usable, monotonic time it was looked up), for open streams
        self._rechecked: dict[str, tuple[bool, float]] = {}

    async def create(
        self,
        *,
        apps: list[str],
        role: Role,
        name: str = "",
        expires_in: timedelta | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and the key itself (shown once). Raises `InvalidArgument` for bad apps,
        or for no app without the admin role."""
        for app_name in apps:
            validate_identifier("app", app_name, self._limits)
        if not apps and role is not Role.ADMIN:
            raise InvalidArgument.of("app", "name at least one app (only an admin may have none)")
        if expires_in is not None and expires_in <= timedelta(0):
            raise InvalidArgument.of("expires", "must be positive")
        secret = new_key()
        stored = await self._repository.insert(
            key_id=new_key_id(),
            name=name,
            key_hash=hash_key(secret),
            apps=tuple(sorted(set(apps))) if apps else None,
            role=role,
            expire_time=datetime.now(UTC) + expires_in if expires_in is not None else None,
        )
        return stored, secret

    async def list(self) -> list[ApiKey]:
        return await self._repository.list()

    async def revoke(self, key_id: str) -> ApiKey:
        return await self._repository.revoke(key_id)

    async def authenticate(self, authorization: str | None) -> Caller:
        """The caller of an `authorization` header value (`Bearer <key>`); raises
        `Unauthenticated` with one and the same message whatever is wrong with it."""
        if authorization is None:
            raise _unauthenticated()
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not looks_like_key(key.strip()):
            raise _unauthenticated()
        digest = hash_key(key.strip())
        now = time.monotonic()
        remembered = self._remembered.get(digest)
        if remembered is not None and now - remembered[1] < REMEMBER_SECONDS:
            caller = remembered[0]
        else:
            found = await self._repository.find_usable(digest)
            caller = None
            if found is not None:
                key_id, apps, role = found
                caller = Caller(key_id, Scope(apps), role)
                # Just found usable: the next recheck of this key need not ask again.
                self._rechecked[key_id] = (True, now)
            if len(self._remembered) > 10_000:
                self._remembered.clear()
            self._remembered[digest] = (caller, now)
        if caller is None:
            raise _unauthenticated()
        return caller

    async def recheck(self, caller: Caller) -> None:
        """Raises `Unauthenticated` once the key behind `caller` is revoked or expired: open
        streams call it every second or so, and it asks the database at most once a second
        per key."""
        now = time.monotonic()
        remembered = self._rechecked.get(caller.name)
        if remembered is not None and now - remembered[1] < REMEMBER_SECONDS:
            usable = remembered[0]
        else:
            usable = await self._repository.is_usable(caller.name)
            if len(self._rechecked) > 10_000:
                self._rechecked.clear()
            self._rechecked[caller.name] = (usable, now)
        if not usable:
            raise _unauthenticated()
