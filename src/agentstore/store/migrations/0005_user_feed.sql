-- One user's events in commit order: a user-scoped feed (StreamEvents with user_id) and a
-- user-scoped search for a common word walk only that user's newest events. Without it they
-- walked the whole app's (a common word for one user of a thousand took about 170 ms at
-- 1,000,000 events).
CREATE INDEX events_app_user_feed_idx ON events (app_name, user_id, tx_id, position);
