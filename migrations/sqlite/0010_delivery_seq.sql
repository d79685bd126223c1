-- Jobs find their delivery by its number, not its id. A delivery id need not rise in arrival
-- order: Slack's is a timestamp and a signature, random within its second (GitHub's, a version-1
-- UUID, rises with time but wraps every seven minutes). So each job's entry in an index on it
-- could land on a page of its own, and a commit of N Slack commands wrote N more pages to the
-- WAL. A number drawn in arrival order puts a batch's entries on the index's last page: a third
-- fewer pages per commit (BENCHMARKS.md, "Queuing /deploy"). `delivery_id` stays on the job,
-- for reading.
CREATE TABLE deliveries_numbered (
    seq          INTEGER PRIMARY KEY,
    id           TEXT    NOT NULL UNIQUE,
    source       TEXT    NOT NULL,
    event        TEXT    NOT NULL,
    received_at  INTEGER NOT NULL
);
INSERT INTO deliveries_numbered (id, source, event, received_at)
    SELECT id, source, event, received_at FROM deliveries ORDER BY received_at, rowid;
DROP TABLE deliveries;
ALTER TABLE deliveries_numbered RENAME TO deliveries;

ALTER TABLE jobs ADD COLUMN delivery_seq INTEGER;
UPDATE jobs SET delivery_seq = (SELECT seq FROM deliveries WHERE deliveries.id = jobs.delivery_id)
    WHERE delivery_id IS NOT NULL;
DROP INDEX jobs_by_delivery;
CREATE INDEX jobs_by_delivery ON jobs (delivery_seq) WHERE delivery_seq IS NOT NULL;
