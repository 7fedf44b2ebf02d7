"""API keys: what one is, how a key is made and how it is recognised. No I/O.

A key is `as_` and 43 characters of URL-safe base64 (256 random bits): recognisable in logs
and secret scanners, and too long to guess. Only its SHA-256 is stored."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from agentstore.domain.callers import Role

__all__ = ["KEY_PREFIX", "ApiKey", "hash_key", "looks_like_key", "new_key", "new_key_id"]

KEY_PREFIX = "as_"
_KEY = re.compile(r"as_[A-Za-z0-9_-]{43}")


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key, without the key itself."""

    id: str
    name: str
    apps: tuple[str, ...] | None  # None: an admin of every app
    role: Role
    create_time: datetime
    expire_time: datetime | None
    revoke_time: datetime | None
    last_used_time: datetime | None


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    """A key's public id, for listing and revoking: not the key."""
    return "key_" + secrets.token_hex(6)


def looks_like_key(text: str) -> bool:
    return _KEY.fullmatch(text) is not None


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
