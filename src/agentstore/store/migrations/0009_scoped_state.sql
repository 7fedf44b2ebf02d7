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
