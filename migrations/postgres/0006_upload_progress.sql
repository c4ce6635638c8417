-- Bytes sent of each upload a worker is running, written by the worker at most about once a
-- second (all of its uploads in one statement), so that another process can show bytes,
-- speed and time left. One row per job: a job uploads one file at a time. A row is current
-- while its job is running under the same attempt; an older one is left until its job is
-- pruned.
CREATE TABLE upload_progress (
    job_id      bigint  PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     bigint  NOT NULL,
    file_index  bigint  NOT NULL,
    file_count  bigint  NOT NULL,
    file_name   text    NOT NULL,
    bytes_sent  bigint  NOT NULL,
    bytes_total bigint  NOT NULL,
    started_at  bigint  NOT NULL,
    updated_at  bigint  NOT NULL
);
