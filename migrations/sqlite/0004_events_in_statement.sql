-- A claim and a finish each write their job_events row inside their own UPDATE (a trigger), so
-- each is one statement, one round trip, and atomic without an explicit transaction. The event
-- time is the database clock at that moment, after the row was won.

-- How a job ended, in words (the success message or the error); set only by a finish.
ALTER TABLE jobs ADD COLUMN summary TEXT;

CREATE TRIGGER jobs_claimed AFTER UPDATE OF attempt ON jobs
BEGIN
    INSERT INTO job_events (job_id, at, state, message)
    VALUES (NEW.id, CAST(unixepoch('subsec') * 1000 AS INTEGER), 'running',
            'attempt ' || NEW.attempt || ' claimed by ' || NEW.lease_owner);
END;

CREATE TRIGGER jobs_finished AFTER UPDATE OF summary ON jobs WHEN NEW.summary IS NOT NULL
BEGIN
    INSERT INTO job_events (job_id, at, state, message)
    VALUES (NEW.id, CAST(unixepoch('subsec') * 1000 AS INTEGER), NEW.state, NEW.summary);
END;
