-- The job queue and its history. This schema is also the contract for producers that insert
-- rows with their own SQLite (3.38 or newer is enough): only DEFAULTs, CHECKs and indexes that
-- run inside any SQLite since 3.35 are used here (no unixepoch(), no 'subsec').
-- Time is unix milliseconds; the defaults compute it with julianday arithmetic.
-- The typeof() CHECKs refuse a producer's row that the worker could not read back (SQLite would
-- otherwise store 'high' in an INTEGER column), so one bad row can never stall the claim.

CREATE TABLE jobs (
    id                 INTEGER PRIMARY KEY,
    idempotency_key    TEXT UNIQUE CHECK (idempotency_key IS NULL OR typeof(idempotency_key) = 'text'),
    queue              TEXT    NOT NULL DEFAULT 'default' CHECK (typeof(queue) = 'text'),
    priority           INTEGER NOT NULL DEFAULT 0 CHECK (typeof(priority) = 'integer'),
    status             TEXT    NOT NULL DEFAULT 'queued'
                       CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
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

-- The claim walks this index in its ORDER BY order and stops at the first due rows.
CREATE INDEX jobs_claim ON jobs (queue, priority DESC, run_at, id) WHERE status = 'queued';
-- The rescuer finds expired leases without scanning finished jobs.
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE status = 'running';
-- Listing and pruning by status and age.
CREATE INDEX jobs_status_updated ON jobs (status, updated_at);

CREATE TABLE job_events (
    id          INTEGER PRIMARY KEY,
    job_id      INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    at          INTEGER NOT NULL,
    kind        TEXT    NOT NULL
                CHECK (kind IN ('claimed', 'step_done', 'step_failed', 'retry_scheduled',
                                'rescued', 'released', 'succeeded', 'failed', 'cancelled',
                                'retried')),
    step        TEXT,
    attempt     INTEGER,
    duration_ms INTEGER,
    error       TEXT,
    http_status INTEGER
);

CREATE INDEX job_events_job ON job_events (job_id, id);
