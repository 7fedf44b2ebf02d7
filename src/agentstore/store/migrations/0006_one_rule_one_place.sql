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

-- The characters Chinese and Japanese search pairs up (cjk_bigrams): hiragana, katakana, CJK
-- ideographs with extension A and the compatibility forms, and halfwidth katakana, as the
-- inside of a regex bracket expression. Queries are rewritten with the same ranges
-- (domain/search.py; tests/integration/test_search_rules.py compares the two).
CREATE FUNCTION cjk_ranges() RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT '\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f'
$$;

-- Whether `t` has any of those characters.
CREATE FUNCTION has_cjk(t text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT t ~ ('[' || cjk_ranges() || ']')
$$;

-- cjk_bigrams(), search_strings() and search_document() as in 0003, with the ranges above
-- instead of five copies of them. Same results: stored search vectors stay valid.
CREATE OR REPLACE FUNCTION cjk_bigrams(t text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE
        WHEN NOT has_cjk(t) THEN t
        ELSE (
            SELECT string_agg(
                CASE
                    WHEN NOT has_cjk(run[1]) OR length(run[1]) = 1
                    THEN run[1]
                    -- Pairs of neighbouring characters, in order. Not substr() at each
                    -- position: on multibyte text that walks from the start every time.
                    ELSE (SELECT string_agg(pair, ' ' ORDER BY i) FROM (
                              SELECT c || lead(c) OVER (ORDER BY i) AS pair, i
                              FROM regexp_split_to_table(run[1], '') WITH ORDINALITY AS chars(c, i)
                          ) AS pairs WHERE pair IS NOT NULL)
                END, ' ' ORDER BY n)
            FROM regexp_matches(
                t, '([' || cjk_ranges() || ']+|[^' || cjk_ranges() || ']+)', 'g'
            ) WITH ORDINALITY AS runs(run, n)
        )
    END
$$;

CREATE OR REPLACE FUNCTION search_strings(data jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN data IS NULL THEN ''
        WHEN has_cjk(data::text)
        THEN cjk_bigrams(left(regexp_replace(
                 jsonb_path_query_array(data, 'strict $.** ? (@.type() == "string")')::text,
                 '\\(u[0-9a-fA-F]{4}|.)', ' ', 'g'), 65536))
        ELSE left(regexp_replace(
                 jsonb_path_query_array(data, 'strict $.** ? (@.type() == "string")')::text,
                 '\\(u[0-9a-fA-F]{4}|.)', ' ', 'g'), 65536)
    END
$$;

CREATE OR REPLACE FUNCTION search_document(content_text text, data jsonb) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT setweight(to_tsvector('english', CASE
               WHEN has_cjk(content_text) THEN cjk_bigrams(left(content_text, 65536))
               ELSE left(COALESCE(content_text, ''), 65536)
           END), 'A')
        || setweight(to_tsvector('english', search_strings(data)), 'B')
$$;
