-- Finished jobs by status and finish time, for the counts per status, `stats` and `prune`.
-- It replaces jobs_status_updated (status, updated_at), which held every job: each claim,
-- checkpoint and finish moved the job's entry, about a fifth of the WAL bytes per job
-- (docs/benchmarks.md, sixth round). Unfinished jobs are counted through the partial
-- indexes they are already in: jobs_due (queued) and jobs_lease (running). A job enters
-- this index once, when it finishes, and at the end of its status's range.
DROP INDEX jobs_status_updated;
CREATE INDEX jobs_finished ON jobs (status, finished_at)
    WHERE status IN ('succeeded', 'failed', 'cancelled');
