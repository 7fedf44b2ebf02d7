"""Search use case: validation, query preparation, paging and snippets."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Any

from agentstore.domain.callers import Caller
from agentstore.domain.errors import InvalidArgument
from agentstore.domain.limits import Limits
from agentstore.domain.search import CJK_RUN, SearchFilter, SearchHit, prepare_query, query_terms
from agentstore.service.paging import (
    MAX_INT64,
    Page,
    PageSize,
    decode_page_token,
    encode_page_token,
    page_size,
)
from agentstore.service.requests import SearchFields
from agentstore.service.validation import validate
from agentstore.store.search import SearchCursor, SearchRepository, is_snapshot

__all__ = ["SearchService"]

SEARCH_PAGE = PageSize(default=20, maximum=100)
SNIPPET_CHARACTERS = 160


class SearchService:
    def __init__(self, repository: SearchRepository, limits: Limits) -> None:
        self._repository = repository
        self._limits = limits

    async def search(
        self,
        caller: Caller,
        request: SearchFields,
        *,
        page_size_requested: int,
        page_token: str,
    ) -> Page[SearchHit]:
        search = validate(SearchFilter, request, self._limits)
        if search.app_name:
            caller.check_app(search.app_name)
        if not search.query.strip():
            raise InvalidArgument.of("query", "must contain something to search for")
        limit = page_size(page_size_requested, SEARCH_PAGE)
        filters = search.model_dump(mode="json")
        after, snapshot = _continuation(decode_page_token(page_token, filters))
        page = await self._repository.search(
            caller.scope,
            search,
            prepare_query(search.query),
            after=after,
            limit=limit + 1,
            snapshot=snapshot,
        )

        def token_after(hit: SearchHit) -> str:
            position = [hit.score, hit.event.session_id, hit.event.seq, page.snapshot]
            return encode_page_token(position, filters)

        terms = query_terms(search.query)
        hits = [_with_snippet(hit, terms) for hit in page.hits]
        return Page.of(hits, limit, token_after)


def _continuation(position: list[Any] | None) -> tuple[SearchCursor | None, str | None]:
    """Where a page token says the next page starts, and the snapshot of the first page.
    Tokens of the previous version have no snapshot: they page over what is there now."""
    if position is None:
        return None, None
    try:
        after = (float(position[0]), str(position[1]), int(position[2]))
    except (ValueError, IndexError, TypeError, OverflowError) as exc:
        raise InvalidArgument.of("page_token", "is malformed") from exc
    if not (math.isfinite(after[0]) and 0 <= after[2] <= MAX_INT64):
        raise InvalidArgument.of("page_token", "is malformed")
    if len(position) == 3:
        return after, None
    snapshot = position[3] if len(position) == 4 else None
    if not isinstance(snapshot, str) or not is_snapshot(snapshot):
        raise InvalidArgument.of("page_token", "is malformed")
    return after, snapshot


def _with_snippet(hit: SearchHit, terms: list[str]) -> SearchHit:
    """PostgreSQL's headline marks English words; it cannot see Chinese or Japanese words
    (the stored text is not split into them). Then mark the query's literal terms."""
    if "<b>" in hit.snippet or not hit.event.content_text:
        return hit
    text = hit.event.content_text
    cjk_terms = [term for term in terms if CJK_RUN.search(term)]
    pattern = "|".join(re.escape(term) for term in sorted(cjk_terms, key=len, reverse=True))
    match = re.search(pattern, text) if pattern else None
    if match is None:
        return replace(hit, snippet=text[:SNIPPET_CHARACTERS])
    start = max(0, match.start() - SNIPPET_CHARACTERS // 3)
    window = text[start : start + SNIPPET_CHARACTERS]
    marked = re.sub(pattern, lambda found: f"<b>{found.group()}</b>", window)
    return replace(hit, snippet=marked)
