-- The current schema, as all migrations together leave it: read this to know the tables.
-- tests/integration/test_migrations.py checks that migrating an empty database gives exactly
-- this. Change the schema by adding a numbered file to migrations/ and updating this file.
--
-- sessions: one row per session. last_seq and version live here so that an append can lock
-- this one row (SELECT ... FOR UPDATE) to serialize writers of one session, and nobody else.
-- event_count and the per-session event counters (events_by_*, text_chars, first and last
-- event time) are kept here by every append, so listing and stats never count events.
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
    event_count bigint      NOT NULL DEFAULT 0,
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
    search_vector tsvector,
    CONSTRAINT events_pkey PRIMARY KEY (session_id, seq),
    CONSTRAINT events_session_event_id_key UNIQUE (session_id, event_id),
    CONSTRAINT events_session_id_fkey FOREIGN KEY (session_id)
        REFERENCES sessions (id) ON DELETE CASCADE,
    CONSTRAINT events_seq_check CHECK (seq > 0)
);

CREATE INDEX events_feed_idx ON events (tx_id, position);
CREATE INDEX events_create_time_idx ON events (create_time);
CREATE INDEX events_search_idx ON events USING gin (search_vector);

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
