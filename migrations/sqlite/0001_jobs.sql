-- Jobs, their history and what is deployed where. Times are UTC milliseconds since the epoch
-- (INTEGER), the same on every backend.

CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT    NOT NULL,               -- 'deploy'
    app           TEXT    NOT NULL,
    env           TEXT    NOT NULL,
    -- Jobs of one lane (app/env) run one at a time, oldest first.
    lane          TEXT    NOT NULL,
    git_ref       TEXT    NOT NULL,
    sha           TEXT    NOT NULL,
    requested_by  TEXT    NOT NULL,
    source        TEXT    NOT NULL,               -- 'github', 'cli', ...
    delivery_id   TEXT,
    state         TEXT    NOT NULL,               -- queued | running | succeeded | failed
    attempt       INTEGER NOT NULL DEFAULT 0,     -- claims so far; also the fencing token
    max_attempts  INTEGER NOT NULL,
    lease_owner   TEXT,
    lease_until   INTEGER,
    created_at    INTEGER NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER,
    error         TEXT,
    result        TEXT                            -- JSON: failure details
);

-- "At most one running job per environment" is a database fact, not a hope.
CREATE UNIQUE INDEX jobs_one_running_per_lane ON jobs (lane) WHERE state = 'running';
-- The claim scans queued jobs oldest first.
CREATE INDEX jobs_queued ON jobs (id) WHERE state = 'queued';
CREATE INDEX jobs_running_lease ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_by_delivery ON jobs (delivery_id) WHERE delivery_id IS NOT NULL;

-- One row per accepted webhook delivery, so a redelivery enqueues nothing new.
CREATE TABLE deliveries (
    id           TEXT    PRIMARY KEY,
    source       TEXT    NOT NULL,
    event        TEXT    NOT NULL,
    received_at  INTEGER NOT NULL
);

-- Every state transition of a job, with why.
CREATE TABLE job_events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id   INTEGER NOT NULL REFERENCES jobs (id),
    at       INTEGER NOT NULL,
    state    TEXT    NOT NULL,
    message  TEXT    NOT NULL
);
CREATE INDEX job_events_by_job ON job_events (job_id, id);

-- Captured output, line by line (secrets already masked).
CREATE TABLE job_logs (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id   INTEGER NOT NULL REFERENCES jobs (id),
    at       INTEGER NOT NULL,
    host     TEXT    NOT NULL,
    step     TEXT    NOT NULL,
    line     TEXT    NOT NULL
);
CREATE INDEX job_logs_by_job ON job_logs (job_id, id);

-- One row per host and step of each attempt.
CREATE TABLE step_results (
    job_id       INTEGER NOT NULL REFERENCES jobs (id),
    attempt      INTEGER NOT NULL,
    host         TEXT    NOT NULL,
    idx          INTEGER NOT NULL,
    name         TEXT    NOT NULL,
    status       TEXT    NOT NULL,                -- ok | failed | timed_out | idle_timeout
    exit_code    INTEGER,
    started_at   INTEGER NOT NULL,
    duration_ms  INTEGER NOT NULL,
    PRIMARY KEY (job_id, attempt, host, idx)
);

-- What release went live where, and when: "previous" is known without guessing from the disk.
CREATE TABLE deployments (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    app          TEXT    NOT NULL,
    env          TEXT    NOT NULL,
    host         TEXT    NOT NULL,
    release_id   TEXT    NOT NULL,
    sha          TEXT    NOT NULL,
    git_ref      TEXT    NOT NULL,
    job_id       INTEGER NOT NULL REFERENCES jobs (id),
    switched_at  INTEGER NOT NULL
);
CREATE INDEX deployments_by_env ON deployments (app, env, id);
