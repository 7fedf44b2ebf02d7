-- Statements about the connection itself (store/database.py).

-- name: configure
-- Sessions and events compare times with now(): every connection works in UTC, so that
-- timestamps come back timezone-aware and identical whatever the server's TimeZone is.
SET TIME ZONE 'UTC';

-- name: ping
SELECT 1;
