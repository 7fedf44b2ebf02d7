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
