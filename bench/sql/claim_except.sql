-- A claim passing over a paused platform (jobs::store::claims, CLAIM_EXCEPT) with 50 000 of
-- that platform's syncs due ahead of 1 000 of the other's, against apalis' own claim. On a
-- fresh database migrated by `socialsync migrate`:
--   createdb claimbench && DATABASE_URL=postgres://…/claimbench socialsync migrate
--   psql -d claimbench -f bench/sql/claim_except.sql
-- Each claim runs in a transaction rolled back, so the figures repeat.
INSERT INTO social_accounts (user_id, platform, platform_user_id, username, status_changed_at, created_at, updated_at)
SELECT 'u', CASE WHEN i <= 50000 THEN 'tiktok' ELSE 'instagram' END, 'p' || i, 'n' || i, 0, 0, 0 FROM generate_series(1, 51000) i;
INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority, dedup_key, platform)
SELECT lpad(i::text, 26, '0'), 'sync', convert_to('{"account_id":' || i || ',"reason":"nightly"}', 'UTF8'), 'Pending', 0, 5,
       now() - interval '1 hour' + i * interval '10 ms', 0, 'sync:' || i, CASE WHEN i <= 50000 THEN 'tiktok' ELSE 'instagram' END
FROM generate_series(1, 51000) i;
INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen) VALUES ('w', 'sync', 'bench', '', now());
VACUUM ANALYZE apalis.jobs;
BEGIN;
EXPLAIN (ANALYZE, BUFFERS) WITH jobs AS (
        SELECT id FROM apalis.jobs
        WHERE (status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts))
          AND run_at < now() AND job_type = 'sync'
          AND (platform IS NULL OR platform <> ALL ('{tiktok}'::text[]))
        ORDER BY priority DESC, run_at ASC
        LIMIT 8
        FOR UPDATE SKIP LOCKED
    )
    UPDATE apalis.jobs j SET status = 'Queued', lock_by = 'w', lock_at = now()
    WHERE j.id = ANY (ARRAY(SELECT id FROM jobs))
    RETURNING j.id;
ROLLBACK;
BEGIN;
EXPLAIN (ANALYZE) SELECT id FROM apalis.get_jobs('w', 'sync', 8);
ROLLBACK;
