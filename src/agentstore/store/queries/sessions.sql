-- Statements about the sessions table. Rules they share are SQL functions of schema.sql:
-- session_is_live(), session_event_count(), within_limit() (the state and metadata size
-- measure), merge_state() and in_scope(): every statement a caller's request runs takes the
-- caller's scope as %(apps)s (null: every app) and touches nothing outside it.

-- name: insert_session
-- A new session (created now, or at the kept create_time of an import); AS001 (within_limit)
-- when state or metadata is too large,
-- sessions_pkey when the id is taken, no row when its app is outside the scope.
INSERT INTO sessions (id, app_name, user_id, agent_id, status, metadata, state, expire_time,
                      create_time)
SELECT %(id)s, %(app_name)s, %(user_id)s, %(agent_id)s, %(status)s,
       within_limit(%(metadata)s, %(max_metadata_bytes)s, 'metadata'),
       within_limit(%(state)s, %(max_state_bytes)s, 'state'),
       now() + %(ttl)s::interval, COALESCE(%(create_time)s::timestamptz, now())
WHERE in_scope(%(app_name)s, %(apps)s)
RETURNING *, session_event_count(last_seq, removed_count) AS event_count;

-- name: select_session
-- A live session by id; its state only when with_state; its app's and user's states only
-- when with_scopes (null otherwise: the subqueries are not run).
SELECT id, app_name, user_id, agent_id, status, metadata,
       CASE WHEN %(with_state)s THEN state ELSE '{}'::jsonb END AS state, version, last_seq,
       session_event_count(last_seq, removed_count) AS event_count, removed_count,
       create_time, update_time, expire_time, delete_time, preview, last_event_time,
       CASE WHEN %(with_scopes)s THEN COALESCE(
           (SELECT a.state FROM app_states AS a WHERE a.app_name = sessions.app_name),
           '{}'::jsonb) END AS app_state,
       CASE WHEN %(with_scopes)s THEN COALESCE(
           (SELECT u.state FROM user_states AS u
            WHERE u.app_name = sessions.app_name AND u.user_id = sessions.user_id),
           '{}'::jsonb) END AS user_state
FROM sessions
WHERE id = %(id)s AND session_is_live(delete_time, expire_time)
  AND in_scope(app_name, %(apps)s);

-- name: select_session_standing
-- Why a statement on a session changed nothing: its version, and whether it is live.
SELECT version, session_is_live(delete_time, expire_time) AS live
FROM sessions WHERE id = %(id)s AND in_scope(app_name, %(apps)s);

-- name: list_sessions
-- Sessions newest first by (create_time, id), strictly after the cursor when one is given.
-- Empty filters match everything. Run unprepared: the planner then sees which filters are
-- empty and uses the app (or app and user) index, as for a statement written for them.
SELECT id, app_name, user_id, agent_id, status, metadata,
       CASE WHEN %(with_state)s THEN state ELSE '{}'::jsonb END AS state, version, last_seq,
       session_event_count(last_seq, removed_count) AS event_count, removed_count,
       create_time, update_time, expire_time, delete_time, preview, last_event_time
FROM sessions
WHERE (%(app_name)s = '' OR app_name = %(app_name)s)
  AND in_scope(app_name, %(apps)s)
  AND (%(user_id)s = '' OR user_id = %(user_id)s)
  AND (%(agent_id)s = '' OR agent_id = %(agent_id)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(show_deleted)s OR session_is_live(delete_time, expire_time))
  AND (%(after_time)s::timestamptz IS NULL
       OR (create_time, id) < (%(after_time)s::timestamptz, %(after_id)s::text))
ORDER BY create_time DESC, id DESC
LIMIT %(limit)s;

-- name: update_session
-- Applies the fields flagged set_*; the version guard is skipped when expected_version is
-- null. No row when the session is not live or the version differs.
UPDATE sessions SET
    status = CASE WHEN %(set_status)s THEN %(status)s ELSE status END,
    metadata = CASE WHEN %(set_metadata)s
                    THEN within_limit(%(metadata)s, %(max_metadata_bytes)s, 'metadata')
                    ELSE metadata END,
    state = CASE WHEN %(set_state)s
                 THEN within_limit(merge_state(state, %(state_delta)s), %(max_state_bytes)s,
                                   'state_delta')
                 ELSE state END,
    expire_time = CASE
        WHEN %(set_expiry)s THEN COALESCE(%(expire_time)s, now() + %(ttl)s::interval)
        ELSE expire_time END,
    version = version + 1,
    update_time = now()
WHERE id = %(id)s AND session_is_live(delete_time, expire_time)
  AND in_scope(app_name, %(apps)s)
  AND (%(expected_version)s::bigint IS NULL OR version = %(expected_version)s::bigint)
RETURNING *, session_event_count(last_seq, removed_count) AS event_count;

-- name: soft_delete_session
UPDATE sessions SET delete_time = now(), update_time = now(), version = version + 1
WHERE id = %(id)s AND session_is_live(delete_time, expire_time)
  AND in_scope(app_name, %(apps)s)
RETURNING *, session_event_count(last_seq, removed_count) AS event_count;

-- name: purge_session
-- The session, live or not, and (by cascade) its events.
DELETE FROM sessions WHERE id = %(id)s AND in_scope(app_name, %(apps)s);

-- name: undelete_session
-- Also lifts an expiry that has passed: otherwise the session would stay invisible.
UPDATE sessions SET
    delete_time = NULL,
    expire_time = CASE WHEN expire_time <= now() THEN NULL ELSE expire_time END,
    update_time = now(),
    version = version + 1
WHERE id = %(id)s AND NOT session_is_live(delete_time, expire_time)
  AND in_scope(app_name, %(apps)s)
RETURNING *, session_event_count(last_seq, removed_count) AS event_count;

-- name: soft_delete_sessions
-- The live sessions of an app, or of one of its users when user_id is not empty.
UPDATE sessions SET delete_time = now(), update_time = now(), version = version + 1
WHERE app_name = %(app_name)s AND (%(user_id)s = '' OR user_id = %(user_id)s)
  AND session_is_live(delete_time, expire_time) AND in_scope(app_name, %(apps)s);

-- name: purge_sessions
-- Every session of an app, or of one of its users when user_id is not empty.
DELETE FROM sessions
WHERE app_name = %(app_name)s AND (%(user_id)s = '' OR user_id = %(user_id)s)
  AND in_scope(app_name, %(apps)s);

-- name: store_stats
-- Counts over the sessions of one app, or of every app in scope when app_name is empty.
WITH scoped AS (
    SELECT status, last_seq, removed_count, delete_time, expire_time,
           session_is_live(delete_time, expire_time) AS live
    FROM sessions
    WHERE (%(app_name)s = '' OR app_name = %(app_name)s) AND in_scope(app_name, %(apps)s)
), by_status AS (
    SELECT status, count(*) AS n FROM scoped WHERE live GROUP BY status
)
SELECT (SELECT count(*) FROM scoped) AS total_sessions,
       (SELECT count(*) FROM scoped WHERE live) AS active_sessions,
       (SELECT count(*) FROM scoped WHERE delete_time IS NOT NULL) AS deleted_sessions,
       (SELECT count(*) FROM scoped WHERE delete_time IS NULL AND NOT live)
           AS expired_sessions,
       (SELECT COALESCE(sum(session_event_count(last_seq, removed_count)), 0)::bigint
        FROM scoped) AS total_events,
       (SELECT COALESCE(jsonb_object_agg(status, n), '{}'::jsonb) FROM by_status)
           AS active_sessions_by_status;

-- name: purge_expired
-- The reaper, which acts for the store itself in every app: one batch at a time, skipping
-- rows another replica is already deleting.
WITH doomed AS (
    SELECT id FROM sessions
    WHERE expire_time < now() - %(grace)s::interval
    ORDER BY expire_time
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM sessions USING doomed WHERE sessions.id = doomed.id;

-- name: purge_deleted
WITH doomed AS (
    SELECT id FROM sessions
    WHERE delete_time < now() - %(retention)s::interval
    ORDER BY delete_time
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM sessions USING doomed WHERE sessions.id = doomed.id;
