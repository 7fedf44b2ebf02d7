-- name: search
-- Hits rank by ts_rank_cd (matches close together count more; weight A, content text, above
-- B, data), then by (session_id, seq) descending so the order is total and pages are stable.
-- Only the newest %(candidates)s matches of the scope are ranked: a common word matches a
-- third of a large store, and ranking all of it cannot be fast. Empty filters match
-- everything. Run unprepared: the planner sees the query's words and which filters are set,
-- so it walks the newest events for a common word and the GIN index for a rare one.
-- Events of soft-deleted, expired or purged sessions never match. Later pages pass the first
-- page's snapshot and see only the events it saw, so their candidates are the first page's
-- (less purged events): events appended in between do not push unread hits out.
WITH candidates AS (
    SELECT e.* FROM events AS e
    WHERE e.search_vector @@ websearch_to_tsquery('english', %(query)s)
      AND (%(app_name)s = '' OR e.app_name = %(app_name)s)
      AND in_scope(e.app_name, %(apps)s)
      AND (%(user_id)s = '' OR e.user_id = %(user_id)s)
      AND (%(agent_id)s = '' OR e.agent_id = %(agent_id)s)
      AND (%(session_id)s = '' OR e.session_id = %(session_id)s)
      AND (%(author)s = '' OR e.author = %(author)s)
      AND (cardinality(%(types)s::text[]) = 0 OR e.type = ANY(%(types)s::text[]))
      AND (%(start_time)s::timestamptz IS NULL OR e.create_time >= %(start_time)s)
      AND (%(end_time)s::timestamptz IS NULL OR e.create_time < %(end_time)s)
      AND (%(snapshot)s::pg_snapshot IS NULL
           OR pg_visible_in_snapshot(e.tx_id, %(snapshot)s::pg_snapshot))
    ORDER BY e.tx_id DESC, e.position DESC
    LIMIT %(candidates)s
), hits AS (
    SELECT c.*, ts_rank_cd(c.search_vector, websearch_to_tsquery('english', %(query)s))::real
               AS score
    FROM candidates AS c
    WHERE EXISTS (
        SELECT 1 FROM sessions AS s
        WHERE s.id = c.session_id AND session_is_live(s.delete_time, s.expire_time)
    )
)
SELECT session_id, seq, event_id, position, type, author, invocation_id, agent_id, branch,
       content_role, content_text, data, actions, metadata, create_time,
       NULL::bytea AS encoded,  -- a hit is built from its columns, with its snippet
       score,
       ts_headline('english', content_text, websearch_to_tsquery('english', %(query)s),
                   'StartSel=<b>, StopSel=</b>, MaxWords=30, MinWords=12, MaxFragments=2')
           AS snippet,
       pg_current_snapshot()::text AS snapshot
FROM hits
WHERE %(after_score)s::real IS NULL
   OR (score, session_id, seq) < (%(after_score)s::real, %(after_session)s::text,
                                  %(after_seq)s::bigint)
ORDER BY score DESC, session_id DESC, seq DESC
LIMIT %(limit)s;
