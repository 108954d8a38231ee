-- As claim_ack.sql, but a succeeded job leaves the queue table at its acknowledgement: the row
-- is deleted and its record (arguments, attempts, outcome, end) kept in `job_history` (made by
-- `run`), beside its run record — the alternative to a pruner that ARCHITECTURE.md weighs.
SELECT coalesce(array_agg(g.id), '{}') AS ids FROM (SELECT set_config('synchronous_commit', 'off', true)) s, apalis.get_jobs('w' || :client_id, 'sync', :n) g \gset
WITH locked AS (SELECT j.id, j.attempts FROM apalis.jobs j WHERE j.id = ANY(:ids::text[]) AND j.lock_by = 'w' || :client_id ORDER BY j.id FOR UPDATE OF j),
acked AS (DELETE FROM apalis.jobs j USING locked WHERE j.id = locked.id RETURNING j.id, j.job_type, j.job, locked.attempts + 1 AS attempts),
kept AS (INSERT INTO job_history (id, queue, job, attempts, outcome, done_at) SELECT id, job_type, job, attempts, 'succeeded', now() FROM acked),
recorded AS (INSERT INTO job_runs (queue, job_id, account_id, attempt, worker, started_at, finished_at, outcome) SELECT 'sync', id, NULL, 1, 'p', 0, 0, 'succeeded' FROM acked)
SELECT count(*) FROM acked;
