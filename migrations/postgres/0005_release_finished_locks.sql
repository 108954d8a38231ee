-- A job that leaves the claimed states (Queued, Running) no longer names a worker in `lock_by`.
--
-- Why: apalis' acknowledgement of a success sets the status and keeps `lock_by`, so every job
-- a worker ever finished stays filed under it in the `lock_by` index. apalis' own queries
-- reach a worker's jobs through that index — the acknowledgement (`… WHERE lock_by = worker`,
-- joined to the acknowledged ids), the orphan rescue of a dead worker, the shutdown release —
-- and so read all of them: an acknowledgement of one job read 67 000 rows after 70 000 jobs
-- (9 ms, growing with every job; a plan without statistics, which autovacuum would refresh,
-- but the orphan rescue of a dead worker reads its whole history whatever the plan).
-- socialsync's own ends (retry, dead, deferral, the dashboard's actions) clear `lock_by`
-- already; this does the same for apalis' writes. Which worker ran each attempt is in
-- `job_runs`.
UPDATE apalis.jobs SET lock_by = NULL WHERE lock_by IS NOT NULL AND status NOT IN ('Queued', 'Running');

CREATE FUNCTION apalis.socialsync_release_lock() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.lock_by := NULL;
    RETURN NEW;
END
$$;

CREATE TRIGGER socialsync_release_finished_lock
    BEFORE UPDATE ON apalis.jobs
    FOR EACH ROW
    WHEN (NEW.lock_by IS NOT NULL AND NEW.status NOT IN ('Queued', 'Running'))
    EXECUTE FUNCTION apalis.socialsync_release_lock();
