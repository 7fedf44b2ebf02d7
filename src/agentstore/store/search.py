"""SearchRepository: the full-text query over events, and nothing else."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any, LiteralString

from psycopg import sql

from agentstore.domain.search import SearchFilter, SearchHit
from agentstore.store.database import Database, fetch_tuples
from agentstore.store.events import AFTER_EVENT_COLUMNS, EVENT_COLUMNS, event_from_row

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


# Hits rank by ts_rank_cd (matches close together count more; weight A, content text, above
# B, data), then by (session_id, seq) descending so the order is total and pages are stable.
# Only the newest %(candidates)s matches of the scope are ranked: a common word matches a third
# of a large store, and ranking all of it cannot be fast. The planner sees the query's
# words (the statement is planned for its parameters, not prepared), so it walks the newest
# events for a common word and goes through the GIN index for a rare one.
# Events of soft-deleted, expired or purged sessions never match. Later pages see only the
# events that the first page's snapshot saw, so their candidates are the first page's (less
# purged events): events appended in between do not push hits out before they are read.
SEARCH: LiteralString = """
WITH candidates AS (
    SELECT e.* FROM events AS e
    WHERE e.search_vector @@ websearch_to_tsquery('english', %(query)s)
      AND {conditions}
    ORDER BY e.tx_id DESC, e.position DESC
    LIMIT %(candidates)s
), hits AS (
    SELECT c.*, ts_rank_cd(c.search_vector, websearch_to_tsquery('english', %(query)s))::real
               AS score
    FROM candidates AS c
    WHERE EXISTS (
        SELECT 1 FROM sessions AS s WHERE s.id = c.session_id
          AND s.delete_time IS NULL AND (s.expire_time IS NULL OR s.expire_time > now())
    )
)
SELECT {columns}, score,
       ts_headline('english', content_text, websearch_to_tsquery('english', %(query)s),
                   'StartSel=<b>, StopSel=</b>, MaxWords=30, MinWords=12, MaxFragments=2')
           AS snippet,
       pg_current_snapshot()::text AS snapshot
FROM hits
WHERE {after}
ORDER BY score DESC, session_id DESC, seq DESC
LIMIT %(limit)s
"""


class SearchRepository:
    def __init__(self, database: Database, *, candidates: int = 2000) -> None:
        self._database = database
        self._candidates = candidates

    async def search(
        self,
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
        conditions: list[sql.Composable] = [sql.SQL("true")]
        params: dict[str, Any] = {
            "query": prepared_query,
            "limit": limit,
            "candidates": self._candidates,
        }
        for column in ("app_name", "user_id", "agent_id", "session_id", "author"):
            if value := getattr(search, column):
                conditions.append(
                    sql.SQL("e.{} = {}").format(sql.Identifier(column), sql.Placeholder(column))
                )
                params[column] = value
        if search.types:
            conditions.append(sql.SQL("e.type = ANY(%(types)s)"))
            params["types"] = search.types
        if search.start_time is not None:
            conditions.append(sql.SQL("e.create_time >= %(start_time)s"))
            params["start_time"] = search.start_time
        if search.end_time is not None:
            conditions.append(sql.SQL("e.create_time < %(end_time)s"))
            params["end_time"] = search.end_time
        if snapshot is not None:
            conditions.append(sql.SQL("pg_visible_in_snapshot(e.tx_id, %(snapshot)s::pg_snapshot)"))
            params["snapshot"] = snapshot
        after_condition = sql.SQL("true")
        if after is not None:
            after_condition = sql.SQL(
                "(score, session_id, seq) < (%(after_score)s::real, %(after_session)s, "
                "%(after_seq)s)"
            )
            params["after_score"], params["after_session"], params["after_seq"] = after
        query = sql.SQL(SEARCH).format(
            conditions=sql.SQL(" AND ").join(conditions),
            columns=sql.SQL(EVENT_COLUMNS),
            after=after_condition,
        )
        async with self._database.connection() as connection:
            # Not prepared: a generic plan cannot tell a rare word from a common one.
            rows = await fetch_tuples(connection, query, params, prepare=False)
        score, snippet, statement_snapshot = (
            AFTER_EVENT_COLUMNS, AFTER_EVENT_COLUMNS + 1, AFTER_EVENT_COLUMNS + 2
        )  # fmt: skip
        hits = [
            SearchHit(event=event_from_row(row), score=row[score], snippet=row[snippet])
            for row in rows
        ]
        if snapshot is None:
            snapshot = rows[0][statement_snapshot] if rows else ""
        return SearchResult(hits, snapshot)
