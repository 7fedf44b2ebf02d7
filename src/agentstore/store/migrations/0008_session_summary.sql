-- A session's summary for session lists (seed 002): the first user message as a preview, kept
-- by the append that stores it, beside last_event_time and the event count, so listing never
-- reads events.
ALTER TABLE sessions ADD COLUMN preview text NOT NULL DEFAULT '';

-- The preview of a message: its text with runs of white space made one space, cut to 200
-- characters. The one definition, used by the append statement and the backfill below.
CREATE FUNCTION preview_of(text text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT left(btrim(regexp_replace(text, '\s+', ' ', 'g')), 200)
$$;

UPDATE sessions SET preview = preview_of(first.content_text)
FROM (
    SELECT DISTINCT ON (session_id) session_id, content_text
    FROM events
    WHERE content_role = 'user' AND preview_of(content_text) <> ''
    ORDER BY session_id, seq
) AS first
WHERE sessions.id = first.session_id;
