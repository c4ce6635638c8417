-- Queues an operator paused (`approval-worker pause QUEUE`): no process claims their jobs
-- until the row is deleted (`resume`). Jobs already running go on to their end.
CREATE TABLE queue_pauses (
    queue     text   PRIMARY KEY,
    paused_at bigint NOT NULL,
    reason    text
);

-- A resumed queue wakes the workers listening, as a new job does.
CREATE FUNCTION queue_pauses_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('approval_worker_jobs', OLD.queue);
    RETURN NULL;
END;
$$;

CREATE TRIGGER queue_pauses_resume AFTER DELETE ON queue_pauses
    FOR EACH ROW EXECUTE FUNCTION queue_pauses_notify();
