-- What the ops dashboard reads beyond the queue and the domain tables.

-- Every worker process, written by its heartbeat: what it runs and whether it still lives.
CREATE TABLE worker_processes (
    name                TEXT    PRIMARY KEY,
    host                TEXT    NOT NULL,
    pid                 BIGINT  NOT NULL,
    queues              TEXT    NOT NULL,   -- JSON: [{"queue": "sync", "concurrency": 8}, …]
    started_at          BIGINT  NOT NULL,
    last_seen           BIGINT  NOT NULL,
    stale_after_ms      BIGINT  NOT NULL,   -- silent this long: its jobs are rescued elsewhere
    stopped_at          BIGINT
);

-- Hourly counts of events that leave no row elsewhere (the API's 429 answers).
CREATE TABLE ops_counters (
    name                TEXT    NOT NULL,
    hour                BIGINT  NOT NULL,   -- the hour's start, ms
    count               BIGINT  NOT NULL,
    PRIMARY KEY (name, hour)
);

-- Throughput per minute and the health figures read finished attempts by time (the outcome
-- included, so the overview's per-minute counts never read the table).
CREATE INDEX job_runs_finished ON job_runs (finished_at) INCLUDE (outcome);
-- The job list filtered by state (and queue) pages by id through this index (ids are ULIDs,
-- so newest first is id order); the overview splits waiting and failed jobs by due time and
-- attempts from it alone, without reading the table (14 ms instead of 130 at a million jobs).
CREATE INDEX socialsync_jobs_status_queue_id ON apalis.jobs (status, job_type, id)
    INCLUDE (run_at, attempts, max_attempts);
