-- Human holds on environments: while a row is unexpired, manual deploys and rollbacks of the
-- environment are refused (with who holds it and why) and automatic ones are skipped.
CREATE TABLE env_locks (
    app         TEXT    NOT NULL,
    env         TEXT    NOT NULL,
    holder      TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,                          -- NULL: until unlocked
    PRIMARY KEY (app, env)
);
