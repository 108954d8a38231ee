-- As claim_ack.sql without the run records: what they cost.
SELECT coalesce(array_agg(g.id), '{}') AS ids FROM (SELECT set_config('synchronous_commit', 'off', true)) s, apalis.get_jobs('w' || :client_id, 'sync', :n) g \gset
WITH locked AS (SELECT j.id, j.attempts FROM apalis.jobs j WHERE j.id = ANY(:ids::text[]) AND j.lock_by = 'w' || :client_id ORDER BY j.id FOR UPDATE OF j),
acked AS (UPDATE apalis.jobs j SET status = 'Done', attempts = locked.attempts + 1, last_result = '{"Ok": null}'::jsonb, done_at = now(), lock_by = NULL, lock_at = NULL FROM locked WHERE j.id = locked.id RETURNING j.id)
SELECT count(*) FROM acked;
