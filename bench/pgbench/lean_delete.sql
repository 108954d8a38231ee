-- The lean queue (lean_setup.sql): a claim of :n jobs (commit without the WAL wait, as
-- socialsync's), then their completion as a delete.
WITH s AS (SELECT set_config('synchronous_commit', 'off', true)), c AS (UPDATE lean_jobs SET status = 1, locked_by = 'w' || :client_id WHERE id = ANY (ARRAY(SELECT id FROM lean_jobs WHERE queue = 'sync' AND status = 0 AND run_at < now() ORDER BY run_at LIMIT :n FOR UPDATE SKIP LOCKED)) RETURNING id) SELECT coalesce(array_agg(c.id), '{}') AS ids FROM s LEFT JOIN c ON true \gset
DELETE FROM lean_jobs WHERE id = ANY (:ids::bigint[]) AND locked_by = 'w' || :client_id;
