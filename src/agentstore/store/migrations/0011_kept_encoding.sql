-- Each event keeps the encoding of its own fields but its content, as the API received them
-- (see `encoded` in schema.sql), so that replay and pages send those bytes as they are
-- instead of building every event again from its columns. Nullable and without a default:
-- adding it rewrites nothing, and the events already stored are read from their columns.
ALTER TABLE events ADD COLUMN encoded bytea;
