-- Statements about the connection itself (store/database.py).

-- name: configure
-- Sessions and events compare times with now(): every connection works in UTC, so that
-- timestamps come back timezone-aware and identical whatever the server's TimeZone is.
SET TIME ZONE 'UTC';

-- name: limit_statements
-- Every statement of a pool connection stops past the call limit (--database-call-timeout),
-- as QueryCanceled, which the store reports as UNAVAILABLE.
SELECT set_config('statement_timeout', %(milliseconds)s, false);

-- name: ping
SELECT 1;
