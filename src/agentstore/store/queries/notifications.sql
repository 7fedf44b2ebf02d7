-- LISTEN/NOTIFY as a doorbell between replicas (store/notifications.py).

-- name: notify
-- One notification per doorbell ("app_name session_id"), in one statement.
SELECT pg_notify(%(channel)s, doorbell) FROM unnest(%(doorbells)s::text[]) AS doorbell;

-- name: listen
LISTEN agentstore_events;
