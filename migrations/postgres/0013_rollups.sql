-- Roll-ups (jobs::retention): the figures the Health page and the overview chart show for 90
-- days, kept after the raw rows they were computed from are pruned (`job_runs`: 30 days).

-- Finished attempts per hour (of `finished_at`) and queue. The pruner fills whole hours up to
-- the `job_runs_rolled_up` mark in `retention_marks`, in the transaction that moves the mark;
-- readers take the roll-up below the mark and the raw rows above it, in one statement.
CREATE TABLE job_run_hours (
    hour                BIGINT  NOT NULL,   -- the hour's start, ms
    queue               TEXT    NOT NULL,
    succeeded           BIGINT  NOT NULL,
    retrying            BIGINT  NOT NULL,
    dead                BIGINT  NOT NULL,
    rate_limited        BIGINT  NOT NULL,   -- failed attempts the platform rate-limited
    PRIMARY KEY (hour, queue)
);

-- One row per nightly sync firing whose day is over: what the Health page shows for it, fixed
-- once the syncs it led to have all started.
CREATE TABLE nightly_sync_rollups (
    schedule            TEXT    NOT NULL,
    fire_at             BIGINT  NOT NULL,
    claimed_at          BIGINT  NOT NULL,
    jobs_enqueued       BIGINT,
    instagram_syncs     BIGINT  NOT NULL,
    tiktok_syncs        BIGINT  NOT NULL,
    last_finished       BIGINT,
    PRIMARY KEY (schedule, fire_at)
);

-- Accounts that became inactive, counted per hour as it happens (an account's status is its
-- present, not its history: one that reconnects leaves no trace in `social_accounts`). A
-- trigger, so every path that ends an account's active life is counted.
CREATE FUNCTION socialsync_count_inactive() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ops_counters (name, hour, count) VALUES ('accounts_inactive', (NEW.status_changed_at / 3600000) * 3600000, 1)
    ON CONFLICT (name, hour) DO UPDATE SET count = ops_counters.count + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER socialsync_count_inactive
    AFTER UPDATE OF status ON social_accounts
    FOR EACH ROW WHEN (OLD.status = 'active' AND NEW.status <> 'active')
    EXECUTE FUNCTION socialsync_count_inactive();

-- The accounts already inactive, counted when they became so.
INSERT INTO ops_counters (name, hour, count)
    SELECT 'accounts_inactive', (status_changed_at / 3600000) * 3600000, COUNT(*) FROM social_accounts
    WHERE status <> 'active' GROUP BY 2;
