"""SearchRepository: the full-text query over events, and nothing else."""

from __future__ import annotations

from typing import Any, LiteralString

from psycopg import sql

from agentstore.domain.search import SearchFilter, SearchHit
from agentstore.store.database import Database
from agentstore.store.events import EVENT_COLUMNS, event_from_row

__all__ = ["SearchCursor", "SearchRepository"]

# (score, session_id, seq) of the last hit of a page: the next page goes on strictly after it.
SearchCursor = tuple[float, str, int]

# Hits rank by ts_rank_cd (matches close together count more; weight A, content text, above
# B, data), then by (session_id, seq) descending so the order is total and pages are stable.
# Events of soft-deleted, expired or purged sessions never match: the join keeps live ones.
SEARCH: LiteralString = """
WITH query AS (SELECT websearch_to_tsquery('english', %(query)s) AS q),
hits AS (
    SELECT e.*, ts_rank_cd(e.search_vector, query.q)::real AS score
    FROM events AS e
    CROSS JOIN query
    JOIN sessions AS s ON s.id = e.session_id
    WHERE e.search_vector @@ query.q
      AND s.delete_time IS NULL AND (s.expire_time IS NULL OR s.expire_time > now())
      AND {conditions}
)
SELECT {columns}, score,
       ts_headline('english', content_text, (SELECT q FROM query),
                   'StartSel=<b>, StopSel=</b>, MaxWords=30, MinWords=12, MaxFragments=2')
           AS snippet
FROM hits
WHERE {after}
ORDER BY score DESC, session_id DESC, seq DESC
LIMIT %(limit)s
"""


class SearchRepository:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def search(
        self, search: SearchFilter, prepared_query: str, *, after: SearchCursor | None, limit: int
    ) -> list[SearchHit]:
        """The best hits for `prepared_query` (see domain.search.prepare_query) within the
        filter, strictly after the cursor."""
        conditions: list[sql.Composable] = [sql.SQL("true")]
        params: dict[str, Any] = {"query": prepared_query, "limit": limit}
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
            cursor = await connection.execute(query, params)
            rows = await cursor.fetchall()
        return [
            SearchHit(event=event_from_row(row), score=row["score"], snippet=row["snippet"])
            for row in rows
        ]
