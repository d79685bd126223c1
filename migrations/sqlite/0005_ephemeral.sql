-- Ephemeral environments (one per matching branch), GitHub deployment ids.

-- One row per environment made from a branch. Rows are kept after teardown (state 'gone') as
-- history; the partial unique indexes only cover environments that exist.
CREATE TABLE ephemeral_envs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    app           TEXT    NOT NULL,
    template      TEXT    NOT NULL,               -- apps.<app>.ephemeral.<template>
    env           TEXT    NOT NULL,               -- <template>-<slug>: the jobs' env
    branch        TEXT    NOT NULL,
    hostname      TEXT    NOT NULL,
    port          INTEGER,                        -- allocated by its first deploy
    state         TEXT    NOT NULL,               -- provisioning | live | updating | tearing_down | gone | failed
    sha           TEXT,                           -- what is live
    last_push_at  INTEGER NOT NULL,
    keep_until    INTEGER,                        -- cleanup skips it until then
    warned_at     INTEGER,                        -- the idle warning was given
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE UNIQUE INDEX ephemeral_envs_existing ON ephemeral_envs (app, env) WHERE state <> 'gone';
-- A port serves one existing environment at a time.
CREATE UNIQUE INDEX ephemeral_envs_ports ON ephemeral_envs (port) WHERE state <> 'gone' AND port IS NOT NULL;

-- The GitHub Deployment a job reports to.
ALTER TABLE jobs ADD COLUMN github_deployment_id INTEGER;

