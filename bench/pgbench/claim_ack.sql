-- One claim of :n jobs (as claims::claim: apalis.get_jobs, commit without the WAL wait), then
-- their acknowledgement with a run record each (as claims::acknowledge for no-op jobs).
SELECT coalesce(array_agg(g.id), '{}') AS ids FROM (SELECT set_config('synchronous_commit', 'off', true)) s, apalis.get_jobs('w' || :client_id, 'sync', :n) g \gset
WITH locked AS (SELECT j.id, j.attempts FROM apalis.jobs j WHERE j.id = ANY(:ids::text[]) AND j.lock_by = 'w' || :client_id ORDER BY j.id FOR UPDATE OF j),
acked AS (UPDATE apalis.jobs j SET status = 'Done', attempts = locked.attempts + 1, last_result = '{"Ok": null}'::jsonb, done_at = now(), lock_by = NULL, lock_at = NULL FROM locked WHERE j.id = locked.id RETURNING j.id),
recorded AS (INSERT INTO job_runs (queue, job_id, account_id, attempt, worker, started_at, finished_at, outcome) SELECT 'sync', id, NULL, 1, 'p', 0, 0, 'succeeded' FROM acked)
SELECT count(*) FROM acked;
