-- The claim skips a queued job when an older one of its lane is still queued (so concurrent
-- claimers keep FIFO within a lane); this index answers that question.
CREATE INDEX jobs_queued_by_lane ON jobs (lane, id) WHERE state = 'queued';
