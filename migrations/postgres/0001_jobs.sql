-- PostgreSQL twin of migrations/sqlite/0001_jobs.sql: same tables, columns and indexes.
-- Times are UTC milliseconds since the epoch (BIGINT), as on SQLite.

CREATE TABLE jobs (
    id            BIGSERIAL PRIMARY KEY,
    kind          TEXT    NOT NULL,
    app           TEXT    NOT NULL,
    env           TEXT    NOT NULL,
    lane          TEXT    NOT NULL,
    git_ref       TEXT    NOT NULL,
    sha           TEXT    NOT NULL,
    requested_by  TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    delivery_id   TEXT,
    state         TEXT    NOT NULL,
    attempt       BIGINT  NOT NULL DEFAULT 0,
    max_attempts  BIGINT  NOT NULL,
    lease_owner   TEXT,
    lease_until   BIGINT,
    created_at    BIGINT  NOT NULL,
    started_at    BIGINT,
    finished_at   BIGINT,
    error         TEXT,
    result        TEXT
);

CREATE UNIQUE INDEX jobs_one_running_per_lane ON jobs (lane) WHERE state = 'running';
CREATE INDEX jobs_queued ON jobs (id) WHERE state = 'queued';
CREATE INDEX jobs_running_lease ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_by_delivery ON jobs (delivery_id) WHERE delivery_id IS NOT NULL;

CREATE TABLE deliveries (
    id           TEXT    PRIMARY KEY,
    source       TEXT    NOT NULL,
    event        TEXT    NOT NULL,
    received_at  BIGINT  NOT NULL
);

CREATE TABLE job_events (
    id       BIGSERIAL PRIMARY KEY,
    job_id   BIGINT  NOT NULL REFERENCES jobs (id),
    at       BIGINT  NOT NULL,
    state    TEXT    NOT NULL,
    message  TEXT    NOT NULL
);
CREATE INDEX job_events_by_job ON job_events (job_id, id);

CREATE TABLE job_logs (
    id       BIGSERIAL PRIMARY KEY,
    job_id   BIGINT  NOT NULL REFERENCES jobs (id),
    at       BIGINT  NOT NULL,
    host     TEXT    NOT NULL,
    step     TEXT    NOT NULL,
    line     TEXT    NOT NULL
);
CREATE INDEX job_logs_by_job ON job_logs (job_id, id);

CREATE TABLE step_results (
    job_id       BIGINT  NOT NULL REFERENCES jobs (id),
    attempt      BIGINT  NOT NULL,
    host         TEXT    NOT NULL,
    idx          BIGINT  NOT NULL,
    name         TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    exit_code    BIGINT,
    started_at   BIGINT  NOT NULL,
    duration_ms  BIGINT  NOT NULL,
    PRIMARY KEY (job_id, attempt, host, idx)
);

CREATE TABLE deployments (
    id           BIGSERIAL PRIMARY KEY,
    app          TEXT    NOT NULL,
    env          TEXT    NOT NULL,
    host         TEXT    NOT NULL,
    release_id   TEXT    NOT NULL,
    sha          TEXT    NOT NULL,
    git_ref      TEXT    NOT NULL,
    job_id       BIGINT  NOT NULL REFERENCES jobs (id),
    switched_at  BIGINT  NOT NULL
);
CREATE INDEX deployments_by_env ON deployments (app, env, id);
