-- Retention (jobs::retention): the pruner deletes history past its configured age in bounded
-- batches, each found through an index on the age it is judged by, so a batch reads only what
-- it deletes however large the table.

-- A pruner pass records what it removed, per table (JSON), beside its firing.
ALTER TABLE cron_runs ADD COLUMN detail TEXT;

-- Snapshots are thinned (one a day per account) and deleted by their age.
CREATE INDEX account_snapshots_taken ON account_snapshots (taken_at);
-- Delivered notifications are deleted by when they were delivered; undelivered ones are kept.
CREATE INDEX notifications_delivered ON notifications (delivered_at) WHERE delivered_at IS NOT NULL;
-- Run records a crash left open (never finished) are deleted by their start; finished ones go
-- through `job_runs_finished`. Few rows: an attempt's record is open only while it runs.
CREATE INDEX job_runs_open ON job_runs (started_at) WHERE finished_at IS NULL;

-- How far a pruner pass got with work that is judged by a moving boundary rather than by a
-- row's own age (snapshots thinned up to `upto`), so the next pass starts there.
CREATE TABLE retention_marks (
    name                TEXT    PRIMARY KEY,
    upto                BIGINT  NOT NULL
);
