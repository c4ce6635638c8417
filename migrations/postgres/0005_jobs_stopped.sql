-- Failed and cancelled jobs by status, newest first: the dashboard's lists of them and bulk
-- retry walk it instead of every job. A job enters it only when it fails or is cancelled, so
-- a job that succeeds writes nothing more.
CREATE INDEX jobs_stopped ON jobs (status, id) WHERE status IN ('failed', 'cancelled');
