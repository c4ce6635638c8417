-- Queues an operator paused (`approval-worker pause QUEUE`): no process claims their jobs
-- until the row is deleted (`resume`). Jobs already running go on to their end.
CREATE TABLE queue_pauses (
    queue     TEXT    PRIMARY KEY,
    paused_at INTEGER NOT NULL,
    reason    TEXT
);
