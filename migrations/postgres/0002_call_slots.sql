-- DingTalk's rate limit is per app and API, whichever host calls. Each row holds the next
-- free call slot of one app's API (unix microseconds); a process takes a few slots at a time
-- by moving it forward in one atomic update, so the slots every host uses never overlap.
CREATE TABLE dingtalk_call_slots (
    app_key      text   NOT NULL,
    endpoint     text   NOT NULL,
    next_slot_us bigint NOT NULL,
    PRIMARY KEY (app_key, endpoint)
);
