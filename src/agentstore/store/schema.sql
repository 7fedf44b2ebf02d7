-- The current schema, as all migrations together leave it: read this to know the tables.
-- tests/integration/test_migrations.py checks that migrating an empty database gives exactly
-- this. Change the schema by adding a numbered file to migrations/ and updating this file.
--
-- Full-text search over event text, in English, Chinese and Japanese.
--
-- PostgreSQL's parsers do not split Chinese or Japanese into words: a whole sentence becomes
-- one token, and a word inside it is never found. cjk_bigrams() rewrites every run of CJK
-- characters as its overlapping two-character pieces ("迁移失败" -> "迁移 移失 失败"), which
-- the parser then takes as words; queries get the same treatment (prepare_query() in
-- domain/search.py), with the pieces of a run as a phrase, so a CJK word matches exactly where
-- its characters stand together. Other text goes through the english configuration (stemming,
-- stop words).
--
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

CREATE FUNCTION cjk_bigrams(t text) RETURNS text
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

-- The strings of a JSON document, space-separated, ready for to_tsvector (see above).
CREATE FUNCTION search_strings(data jsonb) RETURNS text
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

-- What search sees of an event: the first 65,536 characters of its content text (weight A)
-- and of the strings in its data (weight B: tool arguments, streamed deltas, messages
-- recorded in data); a tsvector cannot hold more than 1 MB. cjk_bigrams() is only called for
-- text that has CJK characters: a call costs more than the check. The strings of data come
-- as a JSON array's text; their escapes (\n, \u0007) become spaces. PL/pgSQL, one RETURN
-- expression: it is planned once per connection, where an SQL function would be inlined
-- into the generated column again at the start of every INSERT statement (0.3 ms each).
CREATE FUNCTION search_document(content_text text, data jsonb) RETURNS tsvector
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN setweight(to_tsvector('english', CASE
               WHEN has_cjk(content_text) THEN cjk_bigrams(left(content_text, 65536))
               ELSE left(COALESCE(content_text, ''), 65536)
           END), 'A')
        || setweight(to_tsvector('english', search_strings(data)), 'B');
END
$$;

-- sessions: one row per session. last_seq and version live here so that an append can lock
-- this one row (SELECT ... FOR UPDATE) to serialize writers of one session, and nobody else.
-- The per-session event counters (events_by_*, text_chars, first and last event time) are
-- kept here by every append, so listing and stats never count events.
CREATE TABLE sessions (
    id          text        NOT NULL,
    app_name    text        NOT NULL,
    user_id     text        NOT NULL DEFAULT '',
    agent_id    text        NOT NULL DEFAULT '',
    status      text        NOT NULL DEFAULT 'active',
    metadata    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    state       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    version     bigint      NOT NULL DEFAULT 1,
    last_seq    bigint      NOT NULL DEFAULT 0,
    create_time timestamptz NOT NULL DEFAULT now(),
    update_time timestamptz NOT NULL DEFAULT now(),
    expire_time timestamptz,
    delete_time timestamptz,
    events_by_type   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    events_by_author jsonb       NOT NULL DEFAULT '{}'::jsonb,
    events_by_role   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    text_chars       bigint      NOT NULL DEFAULT 0,
    first_event_time timestamptz,
    last_event_time  timestamptz,
    -- The first user message, for session lists: preview_of() its text; '' until there is one.
    preview          text        NOT NULL DEFAULT '',
    -- How many events RemoveEvents took back: session_event_count() is last_seq less them.
    removed_count    bigint      NOT NULL DEFAULT 0,
    CONSTRAINT sessions_pkey PRIMARY KEY (id),
    CONSTRAINT sessions_status_check CHECK (status IN ('active', 'completed', 'failed')),
    CONSTRAINT sessions_last_seq_check CHECK (last_seq >= 0)
);

-- ListSessions pages newest first by (create_time, id) within an app, or an app's user.
CREATE INDEX sessions_app_create_idx ON sessions (app_name, create_time DESC, id DESC);
CREATE INDEX sessions_app_user_create_idx
    ON sessions (app_name, user_id, create_time DESC, id DESC);
-- The reaper finds expired and long-deleted sessions without scanning the table.
CREATE INDEX sessions_expire_idx ON sessions (expire_time) WHERE expire_time IS NOT NULL;
CREATE INDEX sessions_delete_idx ON sessions (delete_time) WHERE delete_time IS NOT NULL;

-- events: the append-only log. (session_id, seq) is gapless per session: seq is assigned
-- under the session row lock. position is a store-wide order of insertion and tx_id the
-- inserting transaction: a feed across sessions reads only rows whose transaction is older
-- than every running one (tx_id < pg_snapshot_xmin) in (tx_id, position) order, so a slow
-- transaction that took an early position is never skipped. app_name and user_id are copied
-- from the session (they never change) so feeds and search filter without a join.
CREATE TABLE events (
    session_id    text        NOT NULL,
    seq           bigint      NOT NULL,
    event_id      text        NOT NULL,
    position      bigint      GENERATED ALWAYS AS IDENTITY,
    tx_id         xid8        NOT NULL DEFAULT pg_current_xact_id(),
    app_name      text        NOT NULL,
    user_id       text        NOT NULL DEFAULT '',
    type          text        NOT NULL,
    author        text        NOT NULL DEFAULT '',
    invocation_id text        NOT NULL DEFAULT '',
    agent_id      text        NOT NULL DEFAULT '',
    branch        text        NOT NULL DEFAULT '',
    content_role  text        NOT NULL DEFAULT '',
    content_text  text        NOT NULL DEFAULT '',
    data          jsonb,
    actions       jsonb,
    metadata      jsonb,
    create_time   timestamptz NOT NULL DEFAULT now(),
    -- What Search matches: see search_document() below.
    search_vector tsvector GENERATED ALWAYS AS (search_document(content_text, data)) STORED,
    -- The event's own fields but its content (type, author, invocation_id, agent_id,
    -- branch, data, actions, metadata) in the encoding of the API's Event message, made once
    -- at append: reads send it as it is, with the content and the fields the store sets
    -- (event_id, session_id, seq, position, create_time) encoded after it, where rebuilding
    -- each event from the columns above took most of a replay's time. Opaque to the store;
    -- the columns stay what search, filters, state and counters use. NULL for events written
    -- by the server itself (removal notices) and for those appended before migration 0011:
    -- they are built from the columns.
    encoded       bytea,
    CONSTRAINT events_pkey PRIMARY KEY (session_id, seq),
    CONSTRAINT events_session_event_id_key UNIQUE (session_id, event_id),
    CONSTRAINT events_session_id_fkey FOREIGN KEY (session_id)
        REFERENCES sessions (id) ON DELETE CASCADE,
    CONSTRAINT events_seq_check CHECK (seq > 0)
);

CREATE INDEX events_feed_idx ON events (tx_id, position);
CREATE INDEX events_app_feed_idx ON events (app_name, tx_id, position);
CREATE INDEX events_app_user_feed_idx ON events (app_name, user_id, tx_id, position);
CREATE INDEX events_create_time_idx ON events (create_time);
CREATE INDEX events_search_idx ON events USING gin (search_vector);

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

-- How many events a session holds: every seq it handed out, less the events taken back.
CREATE FUNCTION session_event_count(last_seq bigint, removed_count bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT last_seq - removed_count
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

-- The sum of two {"key": count} objects, for the per-session counters; a key whose sum is
-- zero (its events were all removed) is left out. PL/pgSQL for the same reason as
-- merge_state: as a SQL function its body was planned again in every append. Key by key
-- rather than an aggregation of both objects: every append calls it three times, and the
-- aggregation's plan was started each time.
CREATE OR REPLACE FUNCTION add_counts(total jsonb, more jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    counts jsonb := COALESCE(total, '{}'::jsonb);
    key text;
    n text;
    sum bigint;
BEGIN
    IF more IS NULL THEN
        RETURN total;
    END IF;
    FOR key, n IN SELECT * FROM jsonb_each_text(more) LOOP
        sum := COALESCE((counts ->> key)::bigint, 0) + n::bigint;
        IF sum = 0 THEN
            counts := counts - key;
        ELSE
            counts := jsonb_set(counts, ARRAY[key], to_jsonb(sum));
        END IF;
    END LOOP;
    RETURN counts;
END
$$;

-- The preview of a message, for session lists: its text with runs of white space made one
-- space, cut to 200 characters.
CREATE FUNCTION preview_of(text text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT left(btrim(regexp_replace(text, '\s+', ' ', 'g')), 200)
$$;

-- State shared beyond one session: per app, and per (app, user). Changed by UpdateState and,
-- in the append's own transaction, by events' app_state_delta and user_state_delta. A row
-- appears with the first change; reading a missing one gives an empty state at version 0.
CREATE TABLE app_states (
    app_name    text        NOT NULL,
    state       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    version     bigint      NOT NULL DEFAULT 0,
    update_time timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT app_states_pkey PRIMARY KEY (app_name)
);

CREATE TABLE user_states (
    app_name    text        NOT NULL,
    user_id     text        NOT NULL,
    state       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    version     bigint      NOT NULL DEFAULT 0,
    update_time timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT user_states_pkey PRIMARY KEY (app_name, user_id)
);

-- API keys: who may call, in which apps, with which role. Only a SHA-256 of each key is
-- kept; the key itself is shown once, when it is made (`agentstore keys create`).
CREATE TABLE api_keys (
    id           text        NOT NULL,
    name         text        NOT NULL DEFAULT '',
    key_hash     bytea       NOT NULL,
    -- The apps the key reaches; null only for an admin of every app.
    apps         text[],
    role         text        NOT NULL,
    create_time  timestamptz NOT NULL DEFAULT now(),
    expire_time  timestamptz,
    revoke_time  timestamptz,
    last_used_time timestamptz,
    CONSTRAINT api_keys_pkey PRIMARY KEY (id),
    CONSTRAINT api_keys_key_hash_key UNIQUE (key_hash),
    CONSTRAINT api_keys_role_check CHECK (role IN ('reader', 'writer', 'admin')),
    CONSTRAINT api_keys_apps_check CHECK (apps IS NOT NULL OR role = 'admin')
);
