-- What became of each submitted approval, and the notifications telling the producer.
--
-- A row goes in when a job succeeds (its instance exists) and stays `pending` until DingTalk
-- reports a decision, through a Stream event or a poll. Producers read it with plain SQL:
--   SELECT j.status, o.outcome, o.decided_at
--   FROM jobs j LEFT JOIN outcomes o ON o.job_id = j.id WHERE j.idempotency_key = ?;
-- No row: the job has not succeeded (yet), or outcomes are not followed.
CREATE TABLE outcomes (
    job_id        INTEGER PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    instance_id   TEXT    NOT NULL UNIQUE,
    -- `terminated`: withdrawn by the originator; `unknown`: still undecided when the worker
    -- stopped asking (`[outcome] give_up_after_days`).
    outcome       TEXT    NOT NULL DEFAULT 'pending'
                  CHECK (outcome IN ('pending', 'agree', 'refuse', 'terminated', 'deleted',
                                     'unknown')),
    submitted_at  INTEGER NOT NULL,
    -- DingTalk's finish time when it gives one, else when the worker learned the decision.
    decided_at    INTEGER,
    learned_at    INTEGER,
    learned_from  TEXT    CHECK (learned_from IS NULL OR learned_from IN ('stream', 'poll', 'age')),
    -- The approvers' tasks and operation records as DingTalk last returned them (JSON).
    records       TEXT    CHECK (records IS NULL OR json_valid(records)),
    -- Reads of the instance so far, and when the next one is due (NULL: none planned).
    checks        INTEGER NOT NULL DEFAULT 0,
    next_check_at INTEGER,
    last_error    TEXT,
    -- Where the decision is POSTed besides `[outcome] webhook_url`; from the job's payload.
    callback_url  TEXT,
    updated_at    INTEGER NOT NULL
);

CREATE INDEX outcomes_due ON outcomes (next_check_at) WHERE next_check_at IS NOT NULL;
CREATE INDEX outcomes_decided ON outcomes (outcome, decided_at);

-- The outbox of decision notifications: written in the transaction that records the
-- decision, sent until the receiver answers 2xx (at least once; `delivery_id` lets it dedupe).
CREATE TABLE outcome_deliveries (
    id              INTEGER PRIMARY KEY,
    delivery_id     TEXT    NOT NULL UNIQUE,
    job_id          INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    url             TEXT    NOT NULL,
    body            TEXT    NOT NULL CHECK (json_valid(body)),
    status          TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed')),
    -- Sends started so far; each pushes `next_attempt_at` past its own timeout first, so a
    -- sender that dies mid-send leaves the delivery to be sent again, by any process.
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER,
    updated_at      INTEGER NOT NULL
);

CREATE INDEX outcome_deliveries_due ON outcome_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX outcome_deliveries_job ON outcome_deliveries (job_id, id);
