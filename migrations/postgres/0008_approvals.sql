-- PostgreSQL twin of migrations/sqlite/0008_approvals.sql.
-- Approvals: a deploy or rollback of an environment with `approvals = N` waits in
-- 'awaiting_approval' until N people (not its requester) approve it, one rejects it, or
-- `approve_by` passes ('expired'). Every decision is a row here and a job event.
ALTER TABLE jobs ADD COLUMN approvals_needed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN approve_by BIGINT;
-- Set by the one replica that asks for the approvals (posts the message with the buttons).
ALTER TABLE jobs ADD COLUMN approval_requested BIGINT NOT NULL DEFAULT 0;
CREATE INDEX jobs_awaiting_approval ON jobs (id) WHERE state = 'awaiting_approval';

CREATE TABLE approvals (
    job_id    BIGINT NOT NULL REFERENCES jobs (id),
    approver  TEXT    NOT NULL,
    decision  TEXT    NOT NULL,                   -- approve | reject
    at        BIGINT NOT NULL,
    PRIMARY KEY (job_id, approver)
);
