-- Slack: the channel message that shows a job's progress. Posted when the job starts and edited
-- in place when it ends, by whichever worker holds the job then; a retried attempt edits the
-- same message instead of posting another.
ALTER TABLE jobs ADD COLUMN slack_channel TEXT;
ALTER TABLE jobs ADD COLUMN slack_ts TEXT;
