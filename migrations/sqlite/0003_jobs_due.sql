-- Due jobs in run_at order, whatever their priority. The claim first counts the due jobs
-- through this index (capped at the free slots) and then claims no more than that, so neither
-- an idle poll nor a claim for more jobs than are due walks the jobs waiting in backoff, which
-- jobs_claim orders after the due ones only within one priority.
CREATE INDEX jobs_due ON jobs (queue, run_at) WHERE status = 'queued';
