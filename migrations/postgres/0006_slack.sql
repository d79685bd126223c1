-- PostgreSQL twin of migrations/sqlite/0006_slack.sql.
ALTER TABLE jobs ADD COLUMN slack_channel TEXT;
ALTER TABLE jobs ADD COLUMN slack_ts TEXT;
