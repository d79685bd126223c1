-- PostgreSQL twin of migrations/sqlite/0007_locks.sql.
-- Human holds on environments: while a row is unexpired, manual deploys and rollbacks of the
-- environment are refused (with who holds it and why) and automatic ones are skipped.
CREATE TABLE env_locks (
    app         TEXT    NOT NULL,
    env         TEXT    NOT NULL,
    holder      TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT,                          -- NULL: until unlocked
    PRIMARY KEY (app, env)
);
