-- Taking events back (RemoveEvents): a session counts the events it removed, so that its
-- event count is last_seq less them (seqs are never reused), and the per-session counters
-- drop a key whose count falls to zero.
ALTER TABLE sessions ADD COLUMN removed_count bigint NOT NULL DEFAULT 0;

DROP FUNCTION session_event_count(bigint);

-- How many events a session holds: every seq it handed out, less the events taken back.
CREATE FUNCTION session_event_count(last_seq bigint, removed_count bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT last_seq - removed_count
$$;

-- The sum of two {"key": count} objects, for the per-session counters; a key whose sum is
-- zero (its events were all removed) is left out. PL/pgSQL for the same reason as
-- merge_state: as a SQL function its body was planned again in every append.
CREATE OR REPLACE FUNCTION add_counts(total jsonb, more jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    IF more IS NULL THEN
        RETURN total;
    END IF;
    RETURN (
        SELECT COALESCE(jsonb_object_agg(key, n), '{}'::jsonb)
        FROM (
            SELECT key, sum(value::bigint) AS n
            FROM (SELECT * FROM jsonb_each_text(total)
                  UNION ALL SELECT * FROM jsonb_each_text(more)) AS counts
            GROUP BY key
            HAVING sum(value::bigint) <> 0
        ) AS sums
    );
END
$$;
