-- Failed and cancelled jobs by status, newest first: the dashboard's lists of them and bulk
-- retry walk it instead of every job. A job enters it only when it fails or is cancelled, so
-- a job that succeeds writes nothing more (unlike an index of every job's status, which
-- migration 0004 removed for the WAL it cost). Written with OR, as jobs_finished: queries
-- that walk it carry the same term.
CREATE INDEX jobs_stopped ON jobs (status, id) WHERE status = 'failed' OR status = 'cancelled';
