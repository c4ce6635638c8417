-- The same rules, in a form SQLite checks cheaply on every row.
--
-- SQLite evaluates a CHECK constraint or a partial index's WHERE clause for each row a
-- statement writes, and it evaluates an IN list of more than two constants by building a
-- temporary b-tree of the list. In an ordinary query that b-tree is built once per
-- statement; in constraint and index code it is built again for every row. job_events'
-- check on `kind` (ten kinds) cost about 1.8 µs per event row here, and a job writes seven
-- events; jobs' check on `status` ran on every transition, and jobs_finished's WHERE twice
-- for every job row a transition writes. The same tests written as comparisons joined by OR
-- cost next to nothing (docs/benchmarks.md, seventh round).
--
-- SQLite cannot change a CHECK in place, so both tables are rebuilt, in an order that keeps
-- foreign keys on throughout (sqlx runs a migration in a transaction, where turning them off
-- has no effect): the new events table references the new jobs table, so dropping the old
-- jobs table cascades into nothing, and renaming the new jobs table rewrites that reference.
-- Events of jobs that no longer exist (left by a DELETE run with foreign keys off) are not
-- copied: nothing can read them, and the new foreign key would refuse them.

CREATE TABLE jobs_new (
    id                 INTEGER PRIMARY KEY,
    idempotency_key    TEXT UNIQUE CHECK (idempotency_key IS NULL OR typeof(idempotency_key) = 'text'),
    queue              TEXT    NOT NULL DEFAULT 'default' CHECK (typeof(queue) = 'text'),
    priority           INTEGER NOT NULL DEFAULT 0 CHECK (typeof(priority) = 'integer'),
    status             TEXT    NOT NULL DEFAULT 'queued'
                       CHECK (status = 'queued' OR status = 'running' OR status = 'succeeded'
                              OR status = 'failed' OR status = 'cancelled'),
    step               TEXT    NOT NULL DEFAULT 'space',
    payload            TEXT    NOT NULL CHECK (typeof(payload) = 'text' AND json_valid(payload)),
    checkpoint         TEXT    CHECK (checkpoint IS NULL OR json_valid(checkpoint)),
    -- Claims so far. Every claim bumps it, so it also fences writes from an older claim.
    attempt            INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    -- Claims that ended without being the job's fault (shutdown, lost lease): not charged.
    uncharged_attempts INTEGER NOT NULL DEFAULT 0 CHECK (uncharged_attempts >= 0),
    -- NULL: the worker's configured max_attempts.
    max_attempts       INTEGER
                       CHECK (max_attempts IS NULL OR (typeof(max_attempts) = 'integer' AND max_attempts >= 1)),
    run_at             INTEGER NOT NULL
                       DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
                       CHECK (typeof(run_at) = 'integer'),
    lease_owner        TEXT,
    lease_expires_at   INTEGER,
    last_error         TEXT,
    result             TEXT    CHECK (result IS NULL OR json_valid(result)),
    cancel_requested   INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
    created_at         INTEGER NOT NULL
                       DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
    updated_at         INTEGER NOT NULL
                       DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
    finished_at        INTEGER
);

CREATE TABLE job_events_new (
    id          INTEGER PRIMARY KEY,
    job_id      INTEGER NOT NULL REFERENCES jobs_new (id) ON DELETE CASCADE,
    at          INTEGER NOT NULL,
    kind        TEXT    NOT NULL
                CHECK (kind = 'claimed' OR kind = 'step_done' OR kind = 'step_failed'
                       OR kind = 'retry_scheduled' OR kind = 'rescued' OR kind = 'released'
                       OR kind = 'succeeded' OR kind = 'failed' OR kind = 'cancelled'
                       OR kind = 'retried'),
    step        TEXT,
    attempt     INTEGER,
    duration_ms INTEGER,
    error       TEXT,
    http_status INTEGER
);

INSERT INTO jobs_new (id, idempotency_key, queue, priority, status, step, payload, checkpoint, attempt,
    uncharged_attempts, max_attempts, run_at, lease_owner, lease_expires_at, last_error, result,
    cancel_requested, created_at, updated_at, finished_at)
SELECT id, idempotency_key, queue, priority, status, step, payload, checkpoint, attempt,
    uncharged_attempts, max_attempts, run_at, lease_owner, lease_expires_at, last_error, result,
    cancel_requested, created_at, updated_at, finished_at
FROM jobs ORDER BY id;

INSERT INTO job_events_new (id, job_id, at, kind, step, attempt, duration_ms, error, http_status)
SELECT id, job_id, at, kind, step, attempt, duration_ms, error, http_status
FROM job_events WHERE job_id IN (SELECT id FROM jobs) ORDER BY id;

DROP TABLE job_events;
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;
ALTER TABLE job_events_new RENAME TO job_events;

-- The indexes of migrations 0001, 0003 and 0004, except that jobs_finished's WHERE is also
-- written with OR. Queries that walk it carry that same term: SQLite uses a partial index
-- only for a query whose WHERE implies the index's.
CREATE INDEX jobs_claim ON jobs (queue, priority DESC, run_at, id) WHERE status = 'queued';
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX jobs_due ON jobs (queue, run_at) WHERE status = 'queued';
CREATE INDEX jobs_finished ON jobs (status, finished_at)
    WHERE status = 'succeeded' OR status = 'failed' OR status = 'cancelled';
CREATE INDEX job_events_job ON job_events (job_id, id);
