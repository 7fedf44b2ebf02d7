"""Opaque page tokens (AIP-158): what the next page starts after, bound to the request's
filters so that a token cannot be replayed against a different query."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from agentstore.domain.errors import InvalidArgument

__all__ = [
    "MAX_INT64",
    "Page",
    "PageSize",
    "decode_page_token",
    "encode_page_token",
    "page_size",
]

# The largest seq, position or transaction id a token may carry: PostgreSQL's bigint.
MAX_INT64 = 2**63 - 1


ItemT = TypeVar("ItemT")


@dataclass(frozen=True)
class Page(Generic[ItemT]):
    """One page of a list RPC. The transport may send fewer items than `items` (to keep a
    response within what clients accept); `token_after(item)` is then the page token that
    goes on right after the last item it sent, instead of `next_page_token`."""

    items: list[ItemT]
    next_page_token: str
    token_after: Callable[[ItemT], str]

    @classmethod
    def of(cls, rows: list[ItemT], limit: int, token_after: Callable[[ItemT], str]) -> Page[ItemT]:
        """The page of `rows`, read with one row more than `limit` to tell whether more
        follow."""
        next_token = token_after(rows[limit - 1]) if len(rows) > limit else ""
        return cls(rows[:limit], next_token, token_after)


class PageSize:
    """Default and maximum page size of one list RPC."""

    def __init__(self, default: int, maximum: int) -> None:
        self.default = default
        self.maximum = maximum


def page_size(requested: int, sizes: PageSize) -> int:
    if requested < 0:
        raise InvalidArgument.of("page_size", "must not be negative")
    if requested == 0:
        return sizes.default
    return min(requested, sizes.maximum)


def _fingerprint(filters: dict[str, Any]) -> str:
    canonical = json.dumps(filters, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode_page_token(position: list[Any], filters: dict[str, Any]) -> str:
    payload = {"p": position, "f": _fingerprint(filters)}
    raw = json.dumps(payload, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str, filters: dict[str, Any]) -> list[Any] | None:
    """The position a token continues after; None for an empty token (the first page).
    Raises `InvalidArgument` on `page_token` for a malformed token or one made for other
    filters."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
        position = payload["p"]
        fingerprint = payload["f"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise InvalidArgument.of("page_token", "is not a token this server issued") from exc
    if not isinstance(position, list) or fingerprint != _fingerprint(filters):
        raise InvalidArgument.of(
            "page_token", "was issued for a request with other filters or is malformed"
        )
    return position
