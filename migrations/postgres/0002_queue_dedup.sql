-- At most one waiting job per dedup key and queue (invariant 5). apalis' own idempotency key
-- is unique forever; this index only covers jobs that wait to be claimed (Pending) or wait for
-- a retry, so a claimed or running job can plan its successor and a finished one frees the key.
-- (apalis leaves a finished job 'Queued' until it flushes its acknowledgement, so 'Queued'
-- cannot count as waiting.)
ALTER TABLE apalis.jobs ADD COLUMN IF NOT EXISTS dedup_key TEXT;
CREATE UNIQUE INDEX socialsync_jobs_dedup ON apalis.jobs (job_type, dedup_key)
    WHERE dedup_key IS NOT NULL
      AND (status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts));

-- A finished connect remembers its account, so running the job again is a no-op.
ALTER TABLE oauth_states ADD COLUMN account_id BIGINT;
