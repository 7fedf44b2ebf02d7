-- StreamEvents across the sessions of an app reads events in (tx_id, position) order within
-- the app, resuming after a (tx_id, position) token.
CREATE INDEX events_app_feed_idx ON events (app_name, tx_id, position);
