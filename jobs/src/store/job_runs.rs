//! `job_runs`: one row per job attempt — the dashboard's history and the health figures.

use super::{Result, Store};
use crate::{domain::AccountId, time::Timestamp};

#[derive(Clone, Debug)]
pub struct JobRunStart<'a> {
    pub queue: &'a str,
    pub job_id: &'a str,
    pub account_id: Option<AccountId>,
    pub attempt: i32,
    pub worker: &'a str,
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type, serde::Serialize)]
#[sqlx(type_name = "text", rename_all = "snake_case", no_pg_array)]
#[serde(rename_all = "snake_case")]
pub enum JobOutcome {
    Succeeded,
    /// Failed; another attempt is planned.
    Retrying,
    /// Failed for good (permanent error or last attempt).
    Dead,
    /// Put back unstarted or rescheduled (e.g. waiting for a pacing slot).
    Deferred,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct JobRun {
    pub id: i64,
    pub queue: String,
    pub job_id: String,
    pub account_id: Option<AccountId>,
    pub attempt: i32,
    pub worker: String,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub outcome: Option<JobOutcome>,
    pub error_class: Option<String>,
    pub error: Option<String>,
}

/// Run records are history, not the queue. On PostgreSQL their writes commit without waiting
/// for the WAL flush (`synchronous_commit` off for that statement's transaction alone): a
/// database crash — not a restart, not a worker's — may lose the last fraction of a second of
/// them, never a job, whose queue writes stay synchronous; each attempt waits for two flushes
/// fewer (about 1 ms each on this machine, see BENCHMARKS.md).
impl Store {
    /// Records an attempt's start; returns the run's id for [`Store::finish_job_run`].
    pub async fn start_job_run(&self, run: &JobRunStart<'_>, now: Timestamp) -> Result<i64> {
        const PG: &str = "
            INSERT INTO job_runs (queue, job_id, account_id, attempt, worker, started_at)
            SELECT $1, $2, $3, $4, $5, $6 FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit
            RETURNING id";
        const LITE: &str = "
            INSERT INTO job_runs (queue, job_id, account_id, attempt, worker, started_at)
            VALUES ($1, $2, $3, $4, $5, $6) RETURNING id";
        Ok(on_pool!(self, p => sqlx::query_scalar(self.pool().pick(PG, LITE))
            .bind(run.queue).bind(run.job_id).bind(run.account_id).bind(run.attempt)
            .bind(run.worker).bind(now).fetch_one(p).await?))
    }

    /// Records how an attempt ended. `error` must already be free of secrets.
    pub async fn finish_job_run(
        &self,
        id: i64,
        outcome: JobOutcome,
        error_class: Option<&str>,
        error: Option<&str>,
        now: Timestamp,
    ) -> Result<()> {
        const PG: &str = "
            UPDATE job_runs SET finished_at = $2, outcome = $3, error_class = $4, error = $5
            FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit
            WHERE id = $1";
        const LITE: &str = "
            UPDATE job_runs SET finished_at = $2, outcome = $3, error_class = $4, error = $5
            WHERE id = $1";
        on_pool!(self, p => sqlx::query(self.pool().pick(PG, LITE))
            .bind(id).bind(now).bind(outcome).bind(error_class).bind(error).execute(p).await?.rows_affected());
        Ok(())
    }

    /// A job's attempts, in order.
    pub async fn job_runs(&self, job_id: &str) -> Result<Vec<JobRun>> {
        const SQL: &str = "SELECT * FROM job_runs WHERE job_id = $1 ORDER BY id";
        Ok(on_pool!(self, p => sqlx::query_as(SQL).bind(job_id).fetch_all(p).await?))
    }
}
