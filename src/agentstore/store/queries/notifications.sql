-- LISTEN/NOTIFY as a doorbell between replicas (store/notifications.py).

-- name: notify
-- One notification per doorbell ("app_name session_id"), in one statement.
SELECT pg_notify(%(channel)s, doorbell) FROM unnest(%(doorbells)s::text[]) AS doorbell;

-- name: listen
LISTEN agentstore_events;

-- name: greet
-- A listener's greeting, once it listens: a payload that names no app. The replicas that
-- hear it ring this database's channel from then on (they may have stopped, alone).
SELECT pg_notify(%(channel)s, '');

-- name: other_listeners
-- Whether another replica's listener is connected to this database, by the application_name
-- every listener connects with (pg_stat_activity shows it to every role).
SELECT EXISTS (
    SELECT 1 FROM pg_stat_activity
    WHERE datname = current_database() AND application_name = %(application_name)s
      AND pid <> pg_backend_pid()
);
