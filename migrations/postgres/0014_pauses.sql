-- Pauses (jobs::pauses): ops stop a queue's claims or a schedule's firings fleet-wide, and
-- start them again. One row per paused scope (`queue:sync`, `schedule:data_sync`); resuming
-- deletes it, and a row whose `until` has passed no longer pauses anything. Every change is
-- announced on the `socialsync_pauses` channel in its own transaction, so workers hear it at
-- once (their poll is the fallback).
CREATE TABLE pauses (
    scope               TEXT    PRIMARY KEY,
    paused_by           TEXT    NOT NULL,
    reason              TEXT    NOT NULL,
    paused_at           BIGINT  NOT NULL,
    until               BIGINT              -- ms; NULL: until resumed
);
