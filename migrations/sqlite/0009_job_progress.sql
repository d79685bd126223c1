-- Cancelling a running job: a person's request, stored on the row so that the worker holding
-- the job sees it at its next heartbeat, whichever replica it runs on.
ALTER TABLE jobs ADD COLUMN cancel_requested_by TEXT;

-- The messages about a job besides its channel message (the failure's thread reply, the
-- requester's DM). A row is claimed before the message is sent and dropped if sending fails,
-- so a restart or a retried attempt on another replica never sends one twice.
CREATE TABLE job_notices (
    job_id  INTEGER NOT NULL REFERENCES jobs (id),
    kind    TEXT    NOT NULL,                     -- thread | dm
    at      INTEGER NOT NULL,
    ts      TEXT,                                 -- Slack's ts of the message, once sent
    PRIMARY KEY (job_id, kind)
);
