-- State shared beyond one session: an app's (app_states) and a user's within an app
-- (user_states). Events change them in the append statement (events.sql); these statements
-- are GetState's and UpdateState's. A missing row reads as an empty state at version 0.
-- merge_state() and within_limit() are the rules session state follows too.

-- name: select_app_state
SELECT %(app_name)s::text AS app_name, ''::text AS user_id,
       COALESCE(a.state, '{}'::jsonb) AS state, COALESCE(a.version, 0) AS version,
       a.update_time
FROM (SELECT 1) AS one
LEFT JOIN app_states AS a ON a.app_name = %(app_name)s
WHERE in_scope(%(app_name)s, %(apps)s);

-- name: select_user_state
SELECT %(app_name)s::text AS app_name, %(user_id)s::text AS user_id,
       COALESCE(u.state, '{}'::jsonb) AS state, COALESCE(u.version, 0) AS version,
       u.update_time
FROM (SELECT 1) AS one
LEFT JOIN user_states AS u ON u.app_name = %(app_name)s AND u.user_id = %(user_id)s
WHERE in_scope(%(app_name)s, %(apps)s);

-- name: update_app_state
-- Merges the delta; with expected_version, only at that version (0: never set). No row when
-- the version differs.
INSERT INTO app_states AS a (app_name, state, version)
SELECT %(app_name)s,
       within_limit(merge_state('{}'::jsonb, %(delta)s), %(max_state_bytes)s, 'state_delta'), 1
WHERE in_scope(%(app_name)s, %(apps)s)
  AND (%(expected_version)s::bigint IS NULL OR %(expected_version)s::bigint = 0)
ON CONFLICT (app_name) DO UPDATE SET
    state = within_limit(merge_state(a.state, %(delta)s), %(max_state_bytes)s, 'state_delta'),
    version = a.version + 1,
    update_time = now()
WHERE %(expected_version)s::bigint IS NULL OR a.version = %(expected_version)s::bigint
RETURNING app_name, ''::text AS user_id, state, version, update_time;

-- name: update_user_state
INSERT INTO user_states AS u (app_name, user_id, state, version)
SELECT %(app_name)s, %(user_id)s,
       within_limit(merge_state('{}'::jsonb, %(delta)s), %(max_state_bytes)s, 'state_delta'), 1
WHERE in_scope(%(app_name)s, %(apps)s)
  AND (%(expected_version)s::bigint IS NULL OR %(expected_version)s::bigint = 0)
ON CONFLICT (app_name, user_id) DO UPDATE SET
    state = within_limit(merge_state(u.state, %(delta)s), %(max_state_bytes)s, 'state_delta'),
    version = u.version + 1,
    update_time = now()
WHERE %(expected_version)s::bigint IS NULL OR u.version = %(expected_version)s::bigint
RETURNING app_name, user_id, state, version, update_time;
