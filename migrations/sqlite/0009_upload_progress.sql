-- Bytes sent of each upload a worker is running, written by the worker at most about once a
-- second (all of its uploads in one statement), so that another process can show bytes,
-- speed and time left. One row per job: a job uploads one file at a time. A row is current
-- while its job is running under the same attempt; an older one is left until its job is
-- pruned.
CREATE TABLE upload_progress (
    job_id      INTEGER PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    file_index  INTEGER NOT NULL,
    file_count  INTEGER NOT NULL,
    file_name   TEXT    NOT NULL,
    bytes_sent  INTEGER NOT NULL,
    bytes_total INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
