-- apalis' claim function, with one change: the claimed rows are updated by primary key
-- (`id = ANY (ARRAY(…))`) instead of a join with the claiming CTE.
--
-- Why: a SQL function's query is planned with its arguments as parameters, so the planner
-- guesses the claim's LIMIT at a tenth of the due rows. With a backlog (a nightly sweep leaves
-- 100 000 syncs waiting) that guess is ~10 000, and the join became a hash join over a
-- sequential scan of the whole table: 45 ms a claim at 200 000 rows, growing with the table,
-- where the claim itself takes 0.1 ms. Updating by key keeps every claim on the primary key.
-- Same rows, same order, same locking as apalis 1.0.0's `apalis.get_jobs`.
--
-- apalis owns this function: a later apalis migration that redefines it would undo this (its
-- migrations run before socialsync's on a fresh database, after them on an upgrade). Recheck
-- on every apalis upgrade (BENCHMARKS.md, throughput at 200 000 jobs).
CREATE OR REPLACE FUNCTION apalis.get_jobs(
    worker_id TEXT,
    v_job_type TEXT,
    v_job_count INTEGER DEFAULT 5
)
RETURNS SETOF apalis.jobs
LANGUAGE sql
VOLATILE
AS $$
    WITH jobs AS (
        SELECT id
        FROM apalis.jobs
        WHERE
            (
                status = 'Pending'
                OR (
                    status = 'Failed'
                    AND attempts < max_attempts
                )
            )
            AND run_at < now()
            AND job_type = v_job_type
        ORDER BY priority DESC, run_at ASC
        LIMIT v_job_count
        FOR UPDATE SKIP LOCKED
    )
    UPDATE apalis.jobs j
    SET
        status = 'Queued',
        lock_by = worker_id,
        lock_at = now()
    WHERE j.id = ANY (ARRAY(SELECT id FROM jobs))
    RETURNING j.*;
$$;
