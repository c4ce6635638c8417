-- DingTalk calls per app, month and endpoint, for the organisation's monthly call quota
-- (dingtalk-api.md §4). Workers add their tallies every few seconds, one upsert per endpoint in
-- one transaction, so several processes sharing this file add up.
-- `month` is 'YYYY-MM' in China Standard Time (UTC+8), where DingTalk's months begin.
-- `counted` is 1 for endpoints the quota counts (not the token or directory calls).

CREATE TABLE dingtalk_calls (
    app_key    TEXT    NOT NULL,
    month      TEXT    NOT NULL CHECK (length(month) = 7),
    endpoint   TEXT    NOT NULL,
    counted    INTEGER NOT NULL CHECK (counted IN (0, 1)),
    calls      INTEGER NOT NULL DEFAULT 0 CHECK (calls >= 0),
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (app_key, month, endpoint)
) WITHOUT ROWID;
