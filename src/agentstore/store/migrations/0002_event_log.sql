-- Per-session event counters, kept up to date by every append in the same transaction, so
-- GetSessionStats reads one row instead of counting a session's events.
ALTER TABLE sessions
    ADD COLUMN events_by_type   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN events_by_author jsonb       NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN events_by_role   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN text_chars       bigint      NOT NULL DEFAULT 0,
    ADD COLUMN first_event_time timestamptz,
    ADD COLUMN last_event_time  timestamptz;

-- The sum of two {"key": count} objects, for the counters above.
CREATE FUNCTION add_counts(total jsonb, more jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT COALESCE(jsonb_object_agg(key, n), '{}'::jsonb)
    FROM (
        SELECT key, sum(value::bigint) AS n
        FROM (SELECT * FROM jsonb_each_text(total) UNION ALL SELECT * FROM jsonb_each_text(more))
            AS counts
        GROUP BY key
    ) AS sums
$$;
