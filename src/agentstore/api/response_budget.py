"""Every response within what a default gRPC client accepts.

A client built with no options refuses messages over 4 MiB, and a follower refused once is
refused again on every reconnect. So each list page, Search page and StreamEvents message
holds items only while their encoded size stays within RESPONSE_BUDGET_BYTES; an item larger
than that goes alone (the event size limit keeps it under 4 MiB). Measured on the protobuf
messages themselves, not estimated: a Struct of numbers encodes at several times its JSON
size."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from agentstore.domain.limits import RESPONSE_BUDGET_BYTES
from agentstore.service.paging import Page

__all__ = ["RESPONSE_BUDGET_BYTES", "encode_page", "entries_within_budget", "fill_within_budget"]

ItemT = TypeVar("ItemT")
# A repeated field's tag and length prefix, per item.
_PER_ITEM_BYTES = 6


def fill_within_budget(
    repeated: Any,
    items: Sequence[ItemT],
    fill: Callable[[Any, ItemT], object],
    budget: int = RESPONSE_BUDGET_BYTES,
) -> int:
    """Add `items` to the repeated message field `repeated`, each filled in place by
    `fill(new_message, item)`, while their total encoded size stays within `budget` (the
    first item goes in whatever its size). Returns how many were added."""
    total = 0
    for count, item in enumerate(items):
        added = repeated.add()
        fill(added, item)
        total += added.ByteSize() + _PER_ITEM_BYTES
        if total > budget and count > 0:
            del repeated[-1]
            return count
    return len(items)


def entries_within_budget(entries: Sequence[bytes], budget: int) -> int:
    """How many of `entries` (items encoded as the elements of a repeated field, as events
    are: api/event_encoding.py), from the first, fit in `budget` bytes; the first always
    does, as in fill_within_budget."""
    total = 0
    for count, entry in enumerate(entries):
        total += len(entry)
        if total > budget and count > 0:
            return count
    return len(entries)


def encode_page(
    response: Any,
    repeated: Any,
    page: Page[ItemT],
    fill: Callable[[Any, ItemT], object],
    budget: int = RESPONSE_BUDGET_BYTES,
) -> bytes:
    """`response` encoded with the page's items in `repeated` (one of its fields), each filled
    in place by `fill`, and its next page token. When that passes `budget`, the page is cut
    to the items that fit, and the token goes on after the last of them. The server sends
    the bytes as they are (api/decoding.py), so the common case costs nothing more than the
    encoding grpc would have made anyway."""
    for item in page.items:
        fill(repeated.add(), item)
    response.next_page_token = page.next_page_token
    encoded: bytes = response.SerializeToString()
    if len(encoded) <= budget:
        return encoded
    del repeated[:]
    added = fill_within_budget(repeated, page.items, fill, budget)
    if added < len(page.items):
        response.next_page_token = page.token_after(page.items[added - 1])
    result: bytes = response.SerializeToString()
    return result
