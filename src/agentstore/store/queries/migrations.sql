-- The migration ledger (store/migrator.py).

-- name: ledger_exists
-- Asked first, so that a server whose role may not create tables starts on a database that
-- is already migrated.
SELECT to_regclass('schema_migrations') IS NOT NULL;

-- name: create_ledger
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     NOT NULL,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT schema_migrations_pkey PRIMARY KEY (version)
);

-- name: select_applied
SELECT version, name, checksum FROM schema_migrations ORDER BY version;

-- name: insert_applied
INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s);

-- name: lock
-- Replicas starting together take turns.
SELECT pg_advisory_lock(%s);

-- name: unlock
SELECT pg_advisory_unlock(%s);
