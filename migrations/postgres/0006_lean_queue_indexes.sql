-- Fewer index entries written per job on apalis' table: every claim and every end of a job
-- is an update that moves the row (its status is indexed), so it adds an entry to each full
-- index — 6 on a fresh apalis 1.0 table, 2 of them copies of another.
--
-- - `unique_job_id` is the primary key's twin, and `lidx` is `idx_apalis_jobs_lock_by`'s
--   (apalis' first migration created them; its later one that streamlined the indexes kept
--   them): dropped.
-- - The `lock_by` index and the idempotency-key index keep only the rows they can find: a
--   `lock_by` is set only while a job is claimed (migration 0005), and apalis' unique
--   idempotency key already lets any number of rows have none. Every query by `lock_by`
--   (`lock_by = …`, a join on it) implies it is not null, so the partial index serves them all;
--   the uniqueness of idempotency keys is unchanged.
--
-- Measured in BENCHMARKS.md (throughput). Like 0004 and 0005, to recheck on apalis upgrades.
DROP INDEX IF EXISTS apalis.unique_job_id;
DROP INDEX IF EXISTS apalis.lidx;

CREATE INDEX socialsync_jobs_lock_by ON apalis.jobs (lock_by) WHERE lock_by IS NOT NULL;
DROP INDEX IF EXISTS apalis.idx_apalis_jobs_lock_by;

CREATE UNIQUE INDEX socialsync_jobs_idempotency_key ON apalis.jobs (job_type, idempotency_key) WHERE idempotency_key IS NOT NULL;
DROP INDEX IF EXISTS apalis.idx_jobs_idempotency_key;
