-- Each event keeps the encoding of its own fields as the API received them (type through
-- metadata; see `encoded` in schema.sql), so that replay and pages send those bytes as they
-- are instead of building every event again from its columns.
ALTER TABLE events ADD COLUMN encoded bytea;

-- What replay, live reads and ListEvents read: an event with a kept encoding leaves out the
-- columns it holds (data, actions, metadata), which the reader would only decode to encode
-- them again; the others stay, for filters and for what the server reads of every event
-- (its type, seq, position, session, content).
CREATE VIEW event_reads AS
SELECT session_id, seq, event_id, position, type, author, invocation_id, agent_id, branch,
       content_role,
       content_text,
       CASE WHEN encoded IS NULL THEN data END AS data,
       CASE WHEN encoded IS NULL THEN actions END AS actions,
       CASE WHEN encoded IS NULL THEN metadata END AS metadata,
       create_time, encoded, app_name, user_id, tx_id
FROM events;
