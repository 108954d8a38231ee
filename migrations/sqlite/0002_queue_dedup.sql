-- At most one waiting job per dedup key and queue (invariant 5). apalis' own idempotency key
-- is unique forever; this index covers only jobs that wait for their first run (Pending, no
-- attempt yet). apalis moves jobs back to Pending itself (orphan rescue, shutdown) and counts an
-- attempt when it does, so those moves can never collide with this index; a running or
-- retrying job may thus have one fresh job waiting beside it, which its handler's idempotence
-- makes harmless.
ALTER TABLE Jobs ADD COLUMN dedup_key TEXT;
CREATE UNIQUE INDEX socialsync_jobs_dedup ON Jobs (job_type, dedup_key)
    WHERE dedup_key IS NOT NULL
      AND status = 'Pending' AND attempts = 0;

-- A finished connect remembers its account, so running the job again is a no-op.
ALTER TABLE oauth_states ADD COLUMN account_id BIGINT;
