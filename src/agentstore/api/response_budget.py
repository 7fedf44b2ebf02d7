"""Every response within what a default gRPC client accepts.

A client built with no options refuses messages over 4 MiB, and a follower refused once is
refused again on every reconnect. So each list page, Search page and StreamEvents message
holds items only while their encoded size stays within RESPONSE_BUDGET_BYTES; an item larger
than that alone still goes, alone (the event size limit keeps it under 4 MiB). Measured on
the protobuf messages themselves, not estimated: a Struct of numbers encodes at about twice
its JSON size."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from agentstore.domain.limits import RESPONSE_BUDGET_BYTES
from agentstore.service.paging import Page

__all__ = ["RESPONSE_BUDGET_BYTES", "fill_page", "fill_within_budget"]

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


def fill_page(repeated: Any, page: Page[ItemT], fill: Callable[[Any, ItemT], object]) -> str:
    """Add the page's items to `repeated` within the budget; returns the next page token: the
    page's own, or the one after the last item added when the budget cut the page short."""
    added = fill_within_budget(repeated, page.items, fill)
    if added < len(page.items):
        return page.token_after(page.items[added - 1])
    return page.next_page_token
