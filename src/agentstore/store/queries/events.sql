-- Statements about the event log. Shared rules are SQL functions of schema.sql:
-- session_is_live(), session_event_count(), within_limit(), merge_state(), add_counts(),
-- preview_of(),
-- in_scope() (every statement a caller's request runs takes its scope as %(apps)s).

-- name: append_events
-- A whole batch of append messages in one statement: one round trip and one transaction (the
-- pool runs in autocommit). Its input is two JSON arrays of objects, made by the repository
-- from the encodings validation made:
--   messages: {message, session_id, expected_last_seq (or null), event_total}
--   events:   {message, number (the event's place in the batch), event_id, type, author,
--              invocation_id, agent_id, branch, content_role (null without content),
--              content_text, data, actions, metadata, create_time (null: now; an import's
--              kept time otherwise)}
--   encodings: bytea[], the kept encoding of each event (events.encoded), by `number`
-- It returns one row per message up to and including the first that cannot be written,
-- which carries the failure; every message before it is written, it and those after are not.
-- A row has the message's counts, the session's last_seq and version after it, and the seq
-- of each of its events (for a duplicate, the one stored before).
--
-- - The sessions' rows are locked FOR UPDATE in id order, so two appends never wait on each
--   other in a cycle. The lock makes seq gapless and in commit order per session and costs
--   nothing across sessions; `locked` holds the rows as of the lock (the latest versions).
-- - An event is new unless its session holds its id already or an earlier event of the
--   batch has the same id. The lookup uses the statement's snapshot: an event committed by
--   another writer while this one waited for the lock is missed, and the insert then fails
--   on events_session_event_id_key; the repository retries, with a new snapshot.
-- - expected_last_seq is checked only for a message that has something new, so resending a
--   committed message is harmless.
-- - State deltas fold into one delta per session (the last value of each key wins) that
--   merge_state() applies; within_limit() fails the whole statement (AS001) when a merged
--   state would pass the limit: the repository then retries message by message to find the
--   culprit. App and user deltas fold the same way per app and per (app, user) and are
--   merged into app_states and user_states (rows made by the first change). All of that
--   is append_state_changes below, in place of {state_changes}; a batch without deltas
--   takes append_no_state_changes there instead.
WITH msg AS (
    SELECT * FROM jsonb_to_recordset(%(messages)s::jsonb)
        AS m(message int, session_id text, expected_last_seq bigint, event_total int)
), locked AS (
    -- Each session by its key, locked in id order (as for the events below, a plain join's
    -- kept plan scanned the whole table while it was small).
    SELECT row.*
    FROM (SELECT DISTINCT session_id FROM msg ORDER BY session_id) AS wanted,
         LATERAL (
             SELECT id, app_name, user_id, last_seq, version, state, preview,
                    session_is_live(delete_time, expire_time) AS live
             FROM sessions
             WHERE id = wanted.session_id AND in_scope(app_name, %(apps)s)
             FOR UPDATE
         ) AS row
), ev AS (
    SELECT * FROM jsonb_to_recordset(%(events)s::jsonb)
        AS e(message int, number int, event_id text, type text, author text,
             invocation_id text, agent_id text, branch text, content_role text,
             content_text text, data jsonb, actions jsonb, metadata jsonb,
             create_time timestamptz)
), flagged AS (
    SELECT ev.*, msg.session_id, stored.seq AS stored_seq,
           row_number() OVER (PARTITION BY msg.session_id, ev.event_id ORDER BY ev.number) = 1
           AND stored.seq IS NULL AS fresh
    FROM ev JOIN msg USING (message)
    -- One unique-index lookup per event. As a plain join, the plan kept by a prepared
    -- statement (the JSON inputs are estimated at 100 rows) scanned the whole events table on
    -- every append until the table held tens of thousands of rows.
    -- (LIMIT keeps the planner from flattening it back into that join; the key is unique.)
    LEFT JOIN LATERAL (
        SELECT stored.seq FROM events AS stored
        WHERE stored.session_id = msg.session_id AND stored.event_id = ev.event_id
        LIMIT 1
    ) AS stored ON true
), counted AS (
    SELECT msg.message, msg.session_id, msg.expected_last_seq, msg.event_total,
           locked.app_name, locked.live, locked.last_seq, locked.version,
           COALESCE(fresh.n, 0) AS fresh_count
    FROM msg
    LEFT JOIN locked ON locked.id = msg.session_id
    LEFT JOIN (SELECT message, count(*)::int AS n FROM flagged WHERE fresh GROUP BY message)
        AS fresh USING (message)
), before AS (
    SELECT counted.*,
           last_seq + COALESCE(sum(fresh_count) OVER (
               PARTITION BY session_id ORDER BY message
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS seq_before,
           version + count(*) FILTER (WHERE fresh_count > 0) OVER (
               PARTITION BY session_id ORDER BY message ROWS UNBOUNDED PRECEDING)
               AS version_after
    FROM counted
), judged AS (
    SELECT message, session_id, app_name, event_total, fresh_count, seq_before, version_after,
           CASE
               WHEN live IS NOT TRUE THEN 'session_not_found'
               WHEN fresh_count > 0 AND expected_last_seq IS NOT NULL
                    AND expected_last_seq <> seq_before
                   THEN 'last_seq_mismatch'
           END AS failure
    FROM before
), cutoff AS (
    SELECT COALESCE(min(message) FILTER (WHERE failure IS NOT NULL), 2147483647) AS message
    FROM judged
), kept AS (
    SELECT flagged.*, locked.app_name, locked.user_id,
           locked.last_seq + row_number() OVER (
               PARTITION BY flagged.session_id ORDER BY flagged.number) AS seq
    FROM flagged JOIN locked ON locked.id = flagged.session_id
    WHERE flagged.fresh AND flagged.message < (SELECT message FROM cutoff)
), event_seqs AS (
    -- Each event's seq: the new one, or for a duplicate the one stored before (in the table,
    -- or earlier in this batch).
    SELECT flagged.message,
           array_agg(COALESCE(flagged.stored_seq, first.seq) ORDER BY flagged.number) AS seqs
    FROM flagged
    LEFT JOIN kept AS first
        ON first.session_id = flagged.session_id AND first.event_id = flagged.event_id
    GROUP BY flagged.message
), {state_changes}, inserted AS (
    INSERT INTO events (session_id, seq, event_id, app_name, user_id, type, author,
                        invocation_id, agent_id, branch, content_role, content_text, data,
                        actions, metadata, create_time, encoded)
    SELECT session_id, seq, event_id, app_name, user_id, type, author, invocation_id,
           agent_id, branch, COALESCE(content_role, ''), content_text, data, actions, metadata,
           COALESCE(create_time, now()), kept_encoding.encoded
    FROM kept
    -- Joined, not subscripted: finding the nth element of an array of variable-length
    -- values walks the elements before it, every time.
    JOIN unnest(%(encodings)b::bytea[]) WITH ORDINALITY AS kept_encoding(encoded, number)
        USING (number)
), counts AS (
    SELECT session_id, count(*) AS appended, count(DISTINCT message) AS changes,
           sum(length(content_text)) AS text_chars,
           min(COALESCE(create_time, now())) AS first_time,
           max(COALESCE(create_time, now())) AS last_time
    FROM kept GROUP BY session_id
), tallies AS (
    -- The kept events counted by type, by author and by role (of those with content), per
    -- session, in one aggregation: three would each cost the statement their own nodes.
    SELECT session_id,
           jsonb_object_agg(key, n) FILTER (WHERE counter = 'type') AS by_type,
           jsonb_object_agg(key, n) FILTER (WHERE counter = 'author') AS by_author,
           jsonb_object_agg(key, n) FILTER (WHERE counter = 'role') AS by_role
    FROM (SELECT session_id, counter, key, count(*) AS n
          FROM kept,
               LATERAL (VALUES ('type', type), ('author', author), ('role', content_role))
                   AS counted_by(counter, key)
          WHERE key IS NOT NULL
          GROUP BY session_id, counter, key) AS c
    GROUP BY session_id
), first_said AS (
    -- The batch's first user message with text, the preview of a session that has none yet
    -- (only those: most sessions have theirs after the first turn).
    SELECT DISTINCT ON (kept.session_id) kept.session_id, preview_of(kept.content_text) AS preview
    FROM kept JOIN locked ON locked.id = kept.session_id
    WHERE locked.preview = '' AND kept.content_role = 'user'
      AND preview_of(kept.content_text) <> ''
    ORDER BY kept.session_id, kept.seq
), updated AS (
    UPDATE sessions AS s SET
        last_seq = s.last_seq + counts.appended,
        version = s.version + counts.changes,
        state = COALESCE(new_state.state, s.state),
        events_by_type = add_counts(s.events_by_type, tallies.by_type),
        events_by_author = add_counts(s.events_by_author, tallies.by_author),
        events_by_role = add_counts(s.events_by_role, tallies.by_role),
        text_chars = s.text_chars + counts.text_chars,
        first_event_time = LEAST(s.first_event_time, counts.first_time),
        last_event_time = GREATEST(s.last_event_time, counts.last_time),
        update_time = now(),
        preview = COALESCE(first_said.preview, s.preview)
    FROM counts
    JOIN tallies USING (session_id)
    LEFT JOIN new_state ON new_state.id = counts.session_id
    LEFT JOIN first_said USING (session_id)
    -- The keys as an array too: the planner then finds the rows by the primary key instead
    -- of joining against a scan of the whole table.
    WHERE s.id = counts.session_id AND s.id = ANY (ARRAY(SELECT session_id FROM counts))
)
SELECT judged.message, judged.session_id, judged.app_name, judged.fresh_count AS appended,
       judged.event_total - judged.fresh_count AS duplicates,
       CASE WHEN judged.failure IS NULL THEN judged.seq_before + judged.fresh_count
            ELSE judged.seq_before END AS last_seq,
       judged.failure, judged.version_after AS version, event_seqs.seqs
FROM judged
LEFT JOIN event_seqs USING (message)
WHERE judged.message <= (SELECT message FROM cutoff)
ORDER BY judged.message;

-- name: append_state_changes
-- Not a statement: the part of append_events that merges the kept events' state deltas,
-- put in place of {state_changes} when any event of the batch carries one (the repository
-- looks). It makes `new_state`, each changed session's merged state, which the session
-- update joins, and merges app and user deltas into their rows.
last_delta AS (
    SELECT DISTINCT ON (kept.session_id, delta.key) kept.session_id, delta.key, delta.value
    FROM kept, jsonb_each(kept.actions->'state_delta') AS delta
    WHERE jsonb_typeof(kept.actions->'state_delta') = 'object'
    ORDER BY kept.session_id, delta.key, kept.seq DESC
), new_state AS (
    SELECT locked.id,
           within_limit(merge_state(locked.state, jsonb_object_agg(key, value)),
                        %(max_state_bytes)s, 'events.actions.state_delta') AS state
    FROM last_delta JOIN locked ON locked.id = last_delta.session_id
    GROUP BY locked.id, locked.state
), scoped_delta AS (
    -- The kept events' app and user deltas, one value per (scope, key): the last one wins.
    SELECT DISTINCT ON (scoped.scope, kept.app_name, scoped.user_id, delta.key)
           scoped.scope, kept.app_name, scoped.user_id, delta.key, delta.value
    FROM kept,
         LATERAL (VALUES ('app', '', kept.actions->'app_state_delta'),
                         ('user', kept.user_id, kept.actions->'user_state_delta'))
             AS scoped(scope, user_id, document),
         jsonb_each(scoped.document) AS delta
    WHERE jsonb_typeof(scoped.document) = 'object'
    ORDER BY scoped.scope, kept.app_name, scoped.user_id, delta.key,
             kept.message DESC, kept.number DESC
), app_merged AS (
    -- Rows are taken in app order (and users' below in (app, user) order), after the sessions:
    -- appends of many sessions of one app or user wait for each other, never in a cycle.
    INSERT INTO app_states AS a (app_name, state, version)
    SELECT app_name,
           within_limit(merge_state('{}'::jsonb, jsonb_object_agg(key, value)),
                        %(max_state_bytes)s, 'events.actions.app_state_delta'),
           1
    FROM scoped_delta WHERE scope = 'app'
    GROUP BY app_name ORDER BY app_name
    ON CONFLICT (app_name) DO UPDATE SET
        state = within_limit(
            merge_state(a.state, (SELECT jsonb_object_agg(d.key, d.value) FROM scoped_delta AS d
                                  WHERE d.scope = 'app' AND d.app_name = a.app_name)),
            %(max_state_bytes)s, 'events.actions.app_state_delta'),
        version = a.version + 1,
        update_time = now()
), user_merged AS (
    INSERT INTO user_states AS u (app_name, user_id, state, version)
    SELECT app_name, user_id,
           within_limit(merge_state('{}'::jsonb, jsonb_object_agg(key, value)),
                        %(max_state_bytes)s, 'events.actions.user_state_delta'),
           1
    FROM scoped_delta WHERE scope = 'user'
    GROUP BY app_name, user_id ORDER BY app_name, user_id
    ON CONFLICT (app_name, user_id) DO UPDATE SET
        state = within_limit(
            merge_state(u.state, (SELECT jsonb_object_agg(d.key, d.value) FROM scoped_delta AS d
                                  WHERE d.scope = 'user' AND d.app_name = u.app_name
                                    AND d.user_id = u.user_id)),
            %(max_state_bytes)s, 'events.actions.user_state_delta'),
        version = u.version + 1,
        update_time = now()
)

-- name: append_no_state_changes
-- Not a statement: append_state_changes for a batch whose events carry no delta. The same
-- `new_state`, empty: the statement then starts none of the merging's parts, a quarter of
-- its plan, which it would start (and find nothing to do) for every append otherwise.
new_state AS (SELECT NULL::text AS id, NULL::jsonb AS state WHERE false)

-- name: select_live_session
SELECT 1 FROM sessions
WHERE id = %(id)s AND session_is_live(delete_time, expire_time) AND in_scope(app_name, %(apps)s);

-- name: event_read_columns
-- Not a statement: the select list of replay, live reads and ListEvents (read_after,
-- read_feed, list_events put it in place of {event_read_columns}), the columns of an event in
-- event_from_row's order. An event with a kept encoding leaves out the columns it holds
-- (data, actions, metadata), which the reader would only decode to encode them again; the
-- others stay, for what the server reads of every event. (A view would say it once too, but
-- a role that may only read the tables, as docs/operations.md sets one up, could not read it.)
events.session_id, events.seq, events.event_id, events.position, events.type, events.author,
events.invocation_id, events.agent_id, events.branch, events.content_role, events.content_text,
CASE WHEN events.encoded IS NULL THEN events.data END AS data,
CASE WHEN events.encoded IS NULL THEN events.actions END AS actions,
CASE WHEN events.encoded IS NULL THEN events.metadata END AS metadata,
events.create_time, events.encoded

-- name: list_events
-- A session's events matching the filters (empty ones match everything), strictly after the
-- cursor in the page order, and none unless the session is live and in scope (an empty page
-- is then told apart by select_live_session: a page with events needs one round trip). Two
-- statements are made from this text: {direction} ASC with {beyond} >, and DESC with <. Run
-- unprepared, so that the planner drops the empty filters and walks the (session_id, seq)
-- key in order.
SELECT {event_read_columns}
FROM events
WHERE session_id = %(session_id)s
  AND EXISTS (
      SELECT 1 FROM sessions
      WHERE sessions.id = %(session_id)s
        AND session_is_live(sessions.delete_time, sessions.expire_time)
        AND in_scope(sessions.app_name, %(apps)s))
  AND seq > %(after_seq)s
  AND (%(before_seq)s = 0 OR seq < %(before_seq)s)
  AND (%(cursor)s::bigint IS NULL OR seq {beyond} %(cursor)s)
  AND (cardinality(%(types)s::text[]) = 0 OR type = ANY(%(types)s::text[]))
  AND (%(author)s = '' OR author = %(author)s)
  AND (%(agent_id)s = '' OR agent_id = %(agent_id)s)
  AND (%(invocation_id)s = '' OR invocation_id = %(invocation_id)s)
  AND (%(branch)s = '' OR branch = %(branch)s)
  AND (%(start_time)s::timestamptz IS NULL OR create_time >= %(start_time)s)
  AND (%(end_time)s::timestamptz IS NULL OR create_time < %(end_time)s)
ORDER BY seq {direction}
LIMIT %(limit)s;

-- name: read_after
-- Replay and live reads of one session: the events after a seq, in order.
SELECT {event_read_columns}
FROM events
WHERE session_id = %(session_id)s AND seq > %(after_seq)s AND in_scope(app_name, %(apps)s)
ORDER BY seq LIMIT %(limit)s;

-- name: read_feed
-- The feed of an app (or one of its users or agents): events in (tx_id, position) order,
-- only from transactions older than every one still running, so a transaction that took an
-- earlier position but commits later is never skipped: its events only become readable once
-- nothing before them is pending.
SELECT {event_read_columns},
       tx_id::text AS tx_id
FROM events
WHERE app_name = %(app_name)s AND in_scope(app_name, %(apps)s)
  AND (tx_id, position) > (%(after_tx)s::xid8, %(after_position)s)
  AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
  AND (%(user_id)s = '' OR user_id = %(user_id)s)
  AND (%(agent_id)s = '' OR agent_id = %(agent_id)s)
  AND EXISTS (
      SELECT 1 FROM sessions
      WHERE sessions.id = events.session_id
        AND session_is_live(sessions.delete_time, sessions.expire_time))
-- Qualified: a bare `tx_id` here would name the text column of the select list, and order
-- '1000' before '999', so a feed crossing a power of ten skipped ahead, then repeated.
ORDER BY events.tx_id, events.position
LIMIT %(limit)s;

-- name: read_history
-- A session's events after a seq, in order, with its removed_count and last_seq, in one
-- snapshot: ListEvents pages of a whole history, and the check of a replay this replica
-- kept (service/replays.py) with what follows it. No row unless the session is live and in
-- scope; one row without an event when it has none after that seq.
SELECT {event_read_columns}, sessions.removed_count, sessions.last_seq
FROM sessions
LEFT JOIN LATERAL (
    SELECT * FROM events
    WHERE events.session_id = sessions.id AND events.seq > %(after_seq)s
    ORDER BY events.seq
    LIMIT %(limit)s
) AS events ON true
WHERE sessions.id = %(id)s AND session_is_live(sessions.delete_time, sessions.expire_time)
  AND in_scope(sessions.app_name, %(apps)s)
ORDER BY events.seq;

-- name: select_foreign_tx_id
-- An event whose tx_id this cluster has not reached yet was made in another cluster: a
-- logical dump restored here, or logical replication. Feeds and search paging compare tx_id
-- with this cluster's snapshots, so such events would stay hidden from them.
SELECT events.tx_id::text AS newest, pg_snapshot_xmax(pg_current_snapshot())::text AS next
FROM events
WHERE events.tx_id >= pg_snapshot_xmax(pg_current_snapshot())
ORDER BY events.tx_id DESC
LIMIT 1;

-- name: select_session_stats
SELECT session_event_count(last_seq, removed_count) AS event_count, events_by_type,
       events_by_author, events_by_role, text_chars, first_event_time, last_event_time
FROM sessions
WHERE id = %(id)s AND session_is_live(delete_time, expire_time) AND in_scope(app_name, %(apps)s);

-- name: lock_session_for_removal
-- The first statement of a removal's transaction: with the session locked before
-- remove_events starts, remove_events' snapshot sees every change committed before it, so
-- two pops never pick the same newest event.
SELECT 1 FROM sessions WHERE id = %(session_id)s AND in_scope(app_name, %(apps)s) FOR UPDATE;

-- name: remove_events
-- RemoveEvents, after lock_session_for_removal in the same transaction: deletes the chosen
-- events (mode 'newest', 'seqs' (first to last), 'invocation' (from the first event of
-- invocation_id on) or 'all'; removal notices are never chosen), appends one notice event
-- (notice_type, data {ranges, count}) at the next seq, and takes the removed events out of
-- the session's counters and preview. Nothing changes when nothing matches, the session is
-- not live, or expected_last_seq does not hold. Returns one row: the removed event's columns
-- first for mode 'newest' (nulls otherwise), then the outcome.
WITH locked AS (
    SELECT id, app_name, user_id, last_seq, version,
           session_is_live(delete_time, expire_time) AS live
    FROM sessions
    WHERE id = %(session_id)s AND in_scope(app_name, %(apps)s)
    FOR UPDATE
), allowed AS (
    SELECT * FROM locked
    WHERE live AND (%(expected_last_seq)s::bigint IS NULL
                    OR last_seq = %(expected_last_seq)s::bigint)
), target AS (
    (SELECT e.seq FROM events AS e, allowed
     WHERE %(mode)s = 'newest' AND e.session_id = allowed.id AND e.type <> %(notice_type)s
     ORDER BY e.seq DESC LIMIT 1)
    UNION ALL
    SELECT e.seq FROM events AS e, allowed
    WHERE %(mode)s = 'seqs' AND e.session_id = allowed.id AND e.type <> %(notice_type)s
      AND e.seq BETWEEN %(first)s AND %(last)s
    UNION ALL
    SELECT e.seq FROM events AS e, allowed
    WHERE %(mode)s = 'invocation' AND e.session_id = allowed.id
      AND e.type <> %(notice_type)s
      AND e.seq >= (SELECT min(i.seq) FROM events AS i
                    WHERE i.session_id = allowed.id AND i.invocation_id = %(invocation_id)s
                      AND i.type <> %(notice_type)s)
    UNION ALL
    SELECT e.seq FROM events AS e, allowed
    WHERE %(mode)s = 'all' AND e.session_id = allowed.id AND e.type <> %(notice_type)s
), removed AS (
    DELETE FROM events AS e USING target
    WHERE e.session_id = %(session_id)s AND e.seq = target.seq
    RETURNING e.session_id, e.seq, e.event_id, e.position, e.type, e.author, e.invocation_id,
              e.agent_id, e.branch, e.content_role, e.content_text, e.data, e.actions,
              e.metadata, e.create_time, e.encoded
), ranges AS (
    -- Runs of consecutive seqs: a seq less its rank is the same along a run.
    SELECT min(seq) AS first, max(seq) AS last
    FROM (SELECT seq, seq - row_number() OVER (ORDER BY seq) AS run FROM removed) AS runs
    GROUP BY run
), totals AS (
    SELECT count(*) AS n, COALESCE(sum(length(content_text)), 0) AS chars,
           (SELECT jsonb_agg(jsonb_build_array(first, last) ORDER BY first) FROM ranges)
               AS ranges
    FROM removed
), by_type AS (
    SELECT jsonb_object_agg(type, -n) AS counts
    FROM (SELECT type, count(*) AS n FROM removed GROUP BY type) AS c
), by_author AS (
    SELECT jsonb_object_agg(author, -n) AS counts
    FROM (SELECT author, count(*) AS n FROM removed GROUP BY author) AS c
), by_role AS (
    SELECT jsonb_object_agg(content_role, -n) AS counts
    FROM (SELECT content_role, count(*) AS n FROM removed
          WHERE content_role <> '' GROUP BY content_role) AS c
), notice AS (
    INSERT INTO events (session_id, seq, event_id, app_name, user_id, type, data)
    SELECT allowed.id, allowed.last_seq + 1, %(notice_event_id)s, allowed.app_name,
           allowed.user_id, %(notice_type)s,
           jsonb_build_object('ranges', totals.ranges, 'count', totals.n)
    FROM allowed, totals
    WHERE totals.n > 0
    RETURNING seq
), first_said AS (
    -- The preview again, from the events that stay: the removed one may have been it.
    SELECT preview_of(e.content_text) AS preview
    FROM events AS e, allowed
    WHERE e.session_id = allowed.id AND e.content_role = 'user'
      AND preview_of(e.content_text) <> '' AND e.seq NOT IN (SELECT seq FROM target)
    ORDER BY e.seq
    LIMIT 1
), updated AS (
    UPDATE sessions AS s SET
        last_seq = s.last_seq + 1,
        version = s.version + 1,
        removed_count = s.removed_count + totals.n,
        text_chars = s.text_chars - totals.chars,
        events_by_type = add_counts(s.events_by_type,
                                    add_counts(jsonb_build_object(%(notice_type)s, 1),
                                               by_type.counts)),
        events_by_author = add_counts(s.events_by_author,
                                      add_counts(jsonb_build_object('', 1), by_author.counts)),
        events_by_role = add_counts(s.events_by_role, by_role.counts),
        preview = COALESCE((SELECT preview FROM first_said), ''),
        last_event_time = now(),
        update_time = now()
    FROM totals, by_type, by_author, by_role
    WHERE s.id = %(session_id)s AND totals.n > 0
    RETURNING s.last_seq, s.version
)
SELECT removed.*,
       locked.app_name, locked.live, allowed.id IS NOT NULL AS allowed,
       COALESCE((SELECT last_seq FROM updated), locked.last_seq) AS last_seq,
       COALESCE((SELECT version FROM updated), locked.version) AS version,
       (SELECT seq FROM notice) AS notice_seq,
       totals.n AS removed_count, totals.ranges AS removed_ranges
FROM locked
LEFT JOIN allowed ON true
CROSS JOIN totals
LEFT JOIN removed ON %(mode)s = 'newest';

-- name: select_changed_sessions
-- The live safety net's one query per replica and poll: the sessions with events committed
-- since the watermark of the previous poll (null: none yet), and the next watermark, the
-- oldest transaction this snapshot does not see, so that a transaction still running now is
-- read by the next poll once it commits. Sessions may come twice; that only rings twice.
SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS watermark,
       COALESCE((SELECT jsonb_agg(DISTINCT jsonb_build_array(app_name, session_id))
                 FROM events
                 WHERE %(since)s::xid8 IS NOT NULL AND tx_id >= %(since)s::xid8),
                '[]'::jsonb) AS changed;
