//! The PostgreSQL queue as socialsync's own worker loop drives it (`worker::claim_loop`):
//! claims in batches, successes acknowledged in groups together with their run records, the
//! rescue of a dead worker's jobs. Same table, same states and same claim function as apalis
//! 1.0 (`apalis.get_jobs`, with migration 0004's plan fix): apalis still enqueues, and the
//! dashboard, the orphan rescue and [`Store::end_attempt`] see the rows as they always did.

use serde_json::Value;
use sqlx::PgPool;

use super::Result;
use crate::{
    domain::{AccountId, Platform},
    time::Timestamp,
};

/// A job this worker has claimed: it stays `Queued` with `lock_by` = the worker until its
/// attempt ends.
#[derive(Debug)]
pub struct Claimed {
    pub id: String,
    pub payload: Value,
    /// The attempt this run is (1-based): the attempts already counted, plus one.
    pub attempt: i32,
    /// The platform of the account it is about (migration 0015), if any.
    pub platform: Option<Platform>,
}

/// A successful attempt to acknowledge: its job is `Done`, its run record ends `succeeded`.
#[derive(Clone, Debug)]
pub struct Success {
    pub job_id: String,
    /// The queue worker holding it (`lock_by`).
    pub worker: String,
    pub attempt: i32,
    /// When it ended.
    pub at: Timestamp,
    /// Its run record: the id of its recorded start, or what to record it with whole.
    pub run: Result<i64, WholeRun>,
}

/// A run recorded whole when its job is acknowledged (an attempt too quick to have had its
/// start recorded, `worker::attempt::record_start_after`).
#[derive(Clone, Debug)]
pub struct WholeRun {
    pub account_id: Option<AccountId>,
    /// The process that ran it.
    pub worker: String,
    pub started_at: Timestamp,
}

/// Registers (or re-registers) a queue worker, alive now, as apalis' own workers register.
pub async fn register_worker(pool: &PgPool, name: &str, queue: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen)
         VALUES ($1, $2, 'socialsync::claim_loop', '', now())
         ON CONFLICT (id) DO UPDATE SET worker_type = EXCLUDED.worker_type, last_seen = now()",
    )
    .bind(name)
    .bind(queue)
    .execute(pool)
    .await?;
    Ok(())
}

/// Claims up to `n` due jobs of `queue` for `worker`, oldest first, none about an account of
/// the platforms `except` (paused).
///
/// The claim commits without waiting for the WAL flush (`synchronous_commit` off for its own
/// transaction; half a claim's time was that wait). A database crash can lose only a claim
/// no later write has flushed — every synchronous commit flushes the WAL before it, and the
/// acknowledgement is one — and a lost claim leaves its job `Pending` as before it: claimed
/// again and run again, which at-least-once allows; the acknowledgement of the lost run finds
/// the job no longer held and leaves it alone. Acknowledgements stay synchronous: one lost
/// after the worker saw it commit would leave its job claimed by a live worker for good.
pub async fn claim(pool: &PgPool, worker: &str, queue: &str, n: usize, except: &[Platform]) -> Result<Vec<Claimed>> {
    let rows: Vec<(String, Vec<u8>, i32, Option<String>)> = if except.is_empty() {
        sqlx::query_as("SELECT id, job, attempts, platform FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit, apalis.get_jobs($1, $2, $3)")
            .bind(worker)
            .bind(queue)
            .bind(n as i32)
            .fetch_all(pool)
            .await?
    } else {
        sqlx::query_as(CLAIM_EXCEPT)
            .bind(worker)
            .bind(queue)
            .bind(n as i32)
            .bind(except.iter().map(|p| p.as_str()).collect::<Vec<_>>())
            .fetch_all(pool)
            .await?
    };
    // A payload that is not JSON still runs, as `null`: its handler rejects it and the attempt
    // ends dead with the reason, instead of the job staying claimed forever.
    let claimed = |(id, job, attempts, platform): (String, Vec<u8>, i32, Option<String>)| Claimed {
        id,
        payload: serde_json::from_slice(&job).unwrap_or(Value::Null),
        attempt: attempts + 1,
        platform: platform.and_then(|p| Platform::ALL.into_iter().find(|k| k.as_str() == p)),
    };
    Ok(rows.into_iter().map(claimed).collect())
}

/// `apalis.get_jobs` as migration 0004 writes it, passing over the jobs of the platforms `$4`
/// (paused, [`crate::pauses`]): run only while such a pause is in force. The paused jobs are
/// read and passed over in the claim's order, never locked: with 50 000 of them due ahead of
/// the others a claim of 8 took 9.7 ms, apalis' 0.5 ms (2026-12-07, `bench/sql/claim_except.sql`)
/// — an incident's cost, not worth an index every enqueue would write.
const CLAIM_EXCEPT: &str = "
    WITH async_commit AS (SELECT set_config('synchronous_commit', 'off', true)), jobs AS (
        SELECT id FROM apalis.jobs
        WHERE (status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts))
          AND run_at < now() AND job_type = $2
          AND (platform IS NULL OR platform <> ALL ($4::text[]))
        ORDER BY priority DESC, run_at ASC
        LIMIT $3
        FOR UPDATE SKIP LOCKED
    )
    UPDATE apalis.jobs j SET status = 'Queued', lock_by = $1, lock_at = now()
    FROM async_commit
    WHERE j.id = ANY (ARRAY(SELECT id FROM jobs))
    RETURNING j.id, j.job, j.attempts, j.platform";

/// Acknowledges successful attempts of `queue`'s jobs still held by their workers, in one
/// statement: each job `Done` (its lock released, its attempts counted) and its run record
/// ended or written whole, atomically. Returns, in order, whether each job was still held — a
/// job rescued meanwhile is left as it is, its run record ended all the same.
///
/// The rows are locked in id order, as apalis' own acknowledgement does, so two statements on
/// overlapping rows (a dashboard action) wait for each other instead of deadlocking. The ids
/// are also given as a filter (`= ANY`): without it the planner joined on `lock_by`, which all
/// of a worker's claimed jobs share, and compared every job of the group with every job the
/// worker holds (half the statement's time at concurrency 64). Planned at each run: a plan
/// kept from when `job_runs` was empty scans it whole (see `job_runs`).
pub async fn acknowledge(pool: &PgPool, queue: &str, done: &[Success]) -> Result<Vec<bool>> {
    const SQL: &str = r#"
        WITH a AS (
            SELECT * FROM UNNEST($1::text[], $3::text[], $4::int4[], $5::int8[], $6::int8[], $7::int8[], $8::text[], $9::int8[])
                AS a (lock_by, job_id, attempt, run_id, finished_at, account_id, run_by, started_at)
        ), locked AS (
            SELECT j.id FROM apalis.jobs j JOIN a ON a.job_id = j.id WHERE j.id = ANY ($3::text[]) AND j.lock_by = a.lock_by ORDER BY j.id FOR UPDATE OF j
        ), acked AS (
            UPDATE apalis.jobs j
            SET status = 'Done', attempts = a.attempt, last_result = '{"Ok": null}'::jsonb, done_at = now(), lock_by = NULL, lock_at = NULL
            FROM a JOIN locked ON locked.id = a.job_id
            WHERE j.id = locked.id
            RETURNING j.id
        ), runs AS (
            UPDATE job_runs r SET finished_at = a.finished_at, outcome = 'succeeded', error_class = NULL, error = NULL
            FROM a WHERE a.run_id IS NOT NULL AND r.id = a.run_id
        ), recorded AS (
            INSERT INTO job_runs (queue, job_id, account_id, attempt, worker, started_at, finished_at, outcome)
            SELECT $2, a.job_id, a.account_id, a.attempt, a.run_by, a.started_at, a.finished_at, 'succeeded' FROM a WHERE a.run_id IS NULL
        )
        SELECT id FROM acked"#;
    let acked: Vec<String> = sqlx::query_scalar(SQL)
        .persistent(false)
        .bind(done.iter().map(|s| s.worker.as_str()).collect::<Vec<_>>())
        .bind(queue)
        .bind(done.iter().map(|s| s.job_id.as_str()).collect::<Vec<_>>())
        .bind(done.iter().map(|s| s.attempt).collect::<Vec<_>>())
        .bind(
            done.iter()
                .map(|s| s.run.as_ref().ok().copied())
                .collect::<Vec<_>>(),
        )
        .bind(done.iter().map(|s| s.at.millis()).collect::<Vec<_>>())
        .bind(
            done.iter()
                .map(|s| whole(s).and_then(|w| w.account_id).map(|a| a.0))
                .collect::<Vec<_>>(),
        )
        .bind(
            done.iter()
                .map(|s| whole(s).map(|w| w.worker.as_str()))
                .collect::<Vec<_>>(),
        )
        .bind(
            done.iter()
                .map(|s| whole(s).map(|w| w.started_at.millis()))
                .collect::<Vec<_>>(),
        )
        .fetch_all(pool)
        .await?;
    let acked: std::collections::HashSet<String> = acked.into_iter().collect();
    Ok(done.iter().map(|s| acked.contains(&s.job_id)).collect())
}

fn whole(s: &Success) -> Option<&WholeRun> {
    s.run.as_ref().err()
}

/// Puts back the claimed jobs of `queues` whose worker has been silent `stale_after` or longer,
/// counting the attempt that died with it — apalis' own rescue, for several queues at once.
/// Returns how many.
pub async fn rescue_orphans(
    pool: &PgPool,
    queues: &[&str],
    stale_after: std::time::Duration,
) -> Result<u64> {
    const SQL: &str = r#"
        WITH stale AS (
            SELECT jobs.id FROM apalis.jobs INNER JOIN apalis.workers ON jobs.lock_by = workers.id
            WHERE jobs.status IN ('Running', 'Queued') AND now() - workers.last_seen >= $1 AND workers.worker_type = ANY($2)
            FOR UPDATE OF jobs SKIP LOCKED
        )
        UPDATE apalis.jobs SET status = 'Pending', done_at = NULL, lock_by = NULL, lock_at = NULL, attempts = attempts + 1,
            last_result = '{"Err": "Re-enqueued due to worker heartbeat timeout."}'
        FROM stale WHERE apalis.jobs.id = stale.id"#;
    let interval = sqlx::postgres::types::PgInterval::try_from(stale_after)
        .map_err(|e| super::StoreError::Corrupt(e.to_string()))?;
    Ok(sqlx::query(SQL)
        .persistent(false)
        .bind(interval)
        .bind(queues)
        .execute(pool)
        .await?
        .rows_affected())
}

/// Puts back jobs `worker` holds as if never claimed: attempts whose run record could not be
/// written, to be run again (handlers are idempotent).
pub async fn release(pool: &PgPool, worker: &str, ids: &[String]) -> Result<u64> {
    Ok(sqlx::query("UPDATE apalis.jobs SET status = 'Pending', lock_by = NULL, lock_at = NULL WHERE id = ANY($2) AND lock_by = $1")
        .bind(worker)
        .bind(ids)
        .execute(pool)
        .await?
        .rows_affected())
}
