-- Per-session event counters, kept up to date by every append in the same transaction, so
-- GetSessionStats reads one row instead of counting a session's events.
ALTER TABLE sessions
    ADD COLUMN events_by_type   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN events_by_author jsonb       NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN events_by_role   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN text_chars       bigint      NOT NULL DEFAULT 0,
    ADD COLUMN first_event_time timestamptz,
    ADD COLUMN last_event_time  timestamptz;
