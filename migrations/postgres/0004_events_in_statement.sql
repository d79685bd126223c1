-- PostgreSQL twin of migrations/sqlite/0004_events_in_statement.sql.

ALTER TABLE jobs ADD COLUMN summary TEXT;

CREATE FUNCTION slipway_job_claimed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_events (job_id, at, state, message)
    VALUES (NEW.id, (extract(epoch FROM clock_timestamp()) * 1000)::bigint, 'running',
            'attempt ' || NEW.attempt || ' claimed by ' || NEW.lease_owner);
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_claimed AFTER UPDATE OF attempt ON jobs
    FOR EACH ROW EXECUTE FUNCTION slipway_job_claimed();

CREATE FUNCTION slipway_job_finished() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_events (job_id, at, state, message)
    VALUES (NEW.id, (extract(epoch FROM clock_timestamp()) * 1000)::bigint, NEW.state, NEW.summary);
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_finished AFTER UPDATE OF summary ON jobs
    FOR EACH ROW WHEN (NEW.summary IS NOT NULL) EXECUTE FUNCTION slipway_job_finished();
