-- Rollbacks are jobs too: they name the release to go back to (NULL: the previous one).
ALTER TABLE jobs ADD COLUMN target_release TEXT;

-- What a switch was (a deploy or a rollback) and, for blue/green, which slot went live.
ALTER TABLE deployments ADD COLUMN kind TEXT NOT NULL DEFAULT 'deploy';
ALTER TABLE deployments ADD COLUMN slot TEXT;
