-- Each rule the statements share is defined once, here, and referenced by name.
--
-- event_count always equalled last_seq (events are never removed): the stored copy goes.
-- Servers older than this migration read that column: stop them before starting a newer one.
ALTER TABLE sessions DROP COLUMN event_count;

-- Earlier servers accepted a ttl that put expire_time past 9999-12-31, which no client (and no
-- protobuf Timestamp) can represent: every read of such a session failed. Bring them within.
UPDATE sessions SET expire_time = '9999-12-31 23:59:59.999999+00'
WHERE expire_time > '9999-12-31 23:59:59.999999+00';

-- A live session is neither soft-deleted nor expired; everything else reads as not found.
CREATE FUNCTION session_is_live(delete_time timestamptz, expire_time timestamptz)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT delete_time IS NULL AND (expire_time IS NULL OR expire_time > now())
$$;

-- Whether a caller whose scope is `apps` may touch data of `app_name`: null is every app.
CREATE FUNCTION in_scope(app_name text, apps text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT apps IS NULL OR app_name = ANY(apps)
$$;

-- How many events a session holds: every event ever appended (none is ever removed).
CREATE FUNCTION session_event_count(last_seq bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT last_seq
$$;

-- The size of a session's state or metadata: the bytes of its JSON text as PostgreSQL writes
-- jsonb (a space after each ':' and ','). The one measure of the state and metadata limits,
-- at CreateSession, UpdateSession and AppendEvents alike (proto/agentstore/v1/session.proto).
CREATE FUNCTION document_bytes(document jsonb) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT octet_length(document::text)
$$;

-- `document` when it is within `max_bytes`; otherwise error AS001 naming the request field
-- (`field`) in its COLUMN, which the store reports as INVALID_ARGUMENT on that field.
CREATE FUNCTION within_limit(document jsonb, max_bytes integer, field text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    size integer := document_bytes(document);
BEGIN
    IF size > max_bytes THEN
        RAISE EXCEPTION USING
            ERRCODE = 'AS001',
            COLUMN = field,
            MESSAGE = format('would be %s bytes as JSON; the limit is %s', size, max_bytes);
    END IF;
    RETURN document;
END
$$;

-- The state merge: each key of `delta` is set to its value; a key whose value is null is
-- removed. PL/pgSQL so that its plan is made once per connection, not once per statement.
CREATE FUNCTION merge_state(state jsonb, delta jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN (state || COALESCE(
               (SELECT jsonb_object_agg(key, value) FROM jsonb_each(delta)
                WHERE value <> 'null'::jsonb),
               '{}'::jsonb))
           - ARRAY(SELECT key FROM jsonb_each(delta) WHERE value = 'null'::jsonb);
END
$$;

-- The sum of two {"key": count} objects, for the per-session counters. PL/pgSQL for the same
-- reason as merge_state: as a SQL function its body was planned again in every append.
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
        ) AS sums
    );
END
$$;
