"""SearchRepository: the full-text query over events, and nothing else."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

from agentstore.domain.callers import Scope
from agentstore.domain.search import SearchFilter, SearchHit
from agentstore.store.database import Database, fetch_tuples
from agentstore.store.events import EVENT_COLUMNS, event_from_row
from agentstore.store.queries import query

__all__ = ["SearchCursor", "SearchRepository", "SearchResult", "is_snapshot"]

# (score, session_id, seq) of the last hit of a page: the next page goes on strictly after it.
SearchCursor = tuple[float, str, int]

# A pg_snapshot as text: xmin:xmax:xip,... with xmin <= each xip < xmax, the xips ascending.
_SNAPSHOT = re.compile(r"(\d{1,19}):(\d{1,19}):((?:\d{1,19},){0,9999}\d{1,19})?")
_MAX_XID = 2**63 - 1


def is_snapshot(text: str) -> bool:
    """Whether `text` is a snapshot PostgreSQL accepts (as a search returned it)."""
    match = _SNAPSHOT.fullmatch(text)
    if match is None:
        return False
    xmin, xmax = int(match[1]), int(match[2])
    running = [int(xid) for xid in match[3].split(",")] if match[3] else []
    ascending = all(earlier < later for earlier, later in itertools.pairwise(running))
    within = all(xmin <= xid < xmax for xid in running)
    return 0 < xmin <= xmax <= _MAX_XID and ascending and within


@dataclass(frozen=True, slots=True)
class SearchResult:
    """Hits, and the snapshot that decided which events the search could see: the next pages
    look at the same events, so that new ones do not push unread hits out of the candidates."""

    hits: list[SearchHit]
    snapshot: str


SEARCH = query("search", "search")


class SearchRepository:
    def __init__(self, database: Database, *, candidates: int) -> None:
        self._database = database
        self._candidates = candidates

    async def search(
        self,
        scope: Scope,
        search: SearchFilter,
        prepared_query: str,
        *,
        after: SearchCursor | None,
        limit: int,
        snapshot: str | None = None,
    ) -> SearchResult:
        """The best hits for `prepared_query` (see domain.search.prepare_query) within the
        filter, strictly after the cursor, among the events `snapshot` (see is_snapshot) saw
        when given. The page's snapshot is that one, or the statement's own."""
        params: dict[str, Any] = {
            "apps": scope.app_names,
            "query": prepared_query,
            "app_name": search.app_name,
            "user_id": search.user_id,
            "agent_id": search.agent_id,
            "session_id": search.session_id,
            "author": search.author,
            "types": search.types,
            "start_time": search.start_time,
            "end_time": search.end_time,
            "snapshot": snapshot,
            "after_score": after[0] if after else None,
            "after_session": after[1] if after else None,
            "after_seq": after[2] if after else None,
            "limit": limit,
            "candidates": self._candidates,
        }
        async with self._database.connection() as connection:
            # Not prepared: a generic plan cannot tell a rare word from a common one.
            rows = await fetch_tuples(connection, SEARCH, params, prepare=False)
        score, snippet, statement_snapshot = EVENT_COLUMNS, EVENT_COLUMNS + 1, EVENT_COLUMNS + 2
        hits = [
            SearchHit(event=event_from_row(row), score=row[score], snippet=row[snippet])
            for row in rows
        ]
        if snapshot is None:
            snapshot = rows[0][statement_snapshot] if rows else ""
        return SearchResult(hits, snapshot)
