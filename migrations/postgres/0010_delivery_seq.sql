-- PostgreSQL twin of migrations/sqlite/0010_delivery_seq.sql.
-- Jobs find their delivery by its number, not its id. A delivery id need not rise in arrival
-- order (Slack's is a timestamp and a signature, random within its second), so each job's entry
-- in an index on it could land on a page of its own. A number drawn in arrival order puts a
-- batch's entries on the index's last page. `delivery_id` stays on the job, for reading.
ALTER TABLE deliveries ADD COLUMN seq BIGSERIAL;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_seq UNIQUE (seq);

ALTER TABLE jobs ADD COLUMN delivery_seq BIGINT;
UPDATE jobs SET delivery_seq = deliveries.seq FROM deliveries
    WHERE deliveries.id = jobs.delivery_id;
DROP INDEX jobs_by_delivery;
CREATE INDEX jobs_by_delivery ON jobs (delivery_seq) WHERE delivery_seq IS NOT NULL;
