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

impl JobOutcome {
    /// As stored in `job_runs.outcome`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Succeeded => "succeeded",
            JobOutcome::Retrying => "retrying",
            JobOutcome::Dead => "dead",
            JobOutcome::Deferred => "deferred",
        }
    }
}

/// How one attempt ended, for [`Store::finish_job_runs`]. `error` must be free of secrets.
#[derive(Clone, Debug)]
pub struct JobRunEnd {
    pub id: i64,
    pub outcome: JobOutcome,
    pub error_class: Option<String>,
    pub error: Option<String>,
    pub at: Timestamp,
}

/// How an attempt ended, for a run recorded whole at its end ([`Store::record_job_runs`]).
/// `error` must be free of secrets.
#[derive(Clone, Debug)]
pub struct JobRunEnding {
    pub outcome: JobOutcome,
    pub error_class: Option<String>,
    pub error: Option<String>,
    pub at: Timestamp,
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
        let ids = self.start_job_runs(&[(run.clone(), now)]).await?;
        ids.into_iter().next().ok_or_else(|| super::StoreError::Corrupt("recording a run returned no id".into()))
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
        let end = JobRunEnd { id, outcome, error_class: error_class.map(str::to_owned), error: error.map(str::to_owned), at: now };
        self.finish_job_runs(std::slice::from_ref(&end)).await
    }

    /// Records the starts of several attempts in one statement (each with its instant);
    /// returns their run ids, in order.
    pub async fn start_job_runs(&self, runs: &[(JobRunStart<'_>, Timestamp)]) -> Result<Vec<i64>> {
        let runs: Vec<_> = runs.iter().map(|(r, at)| (r.clone(), *at, None)).collect();
        self.record_job_runs(&runs).await
    }

    /// Records several attempts in one statement: each started at its instant and, if its
    /// ending is given, ended (an attempt recorded whole, once over). Returns their run ids,
    /// in order. Used by the worker runtime to write the runs of concurrent attempts together
    /// (see `worker::run_log`).
    pub async fn record_job_runs(&self, runs: &[(JobRunStart<'_>, Timestamp, Option<&JobRunEnding>)]) -> Result<Vec<i64>> {
        const PG: &str = "
            INSERT INTO job_runs (queue, job_id, account_id, attempt, worker, started_at, finished_at, outcome, error_class, error)
            SELECT r.queue, r.job_id, r.account_id, r.attempt, r.worker, r.started_at, r.finished_at, r.outcome, r.error_class, r.error
            FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int4[], $5::text[], $6::int8[], $7::int8[], $8::text[], $9::text[], $10::text[]) WITH ORDINALITY
                AS r (queue, job_id, account_id, attempt, worker, started_at, finished_at, outcome, error_class, error, ord),
                (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit
            ORDER BY r.ord
            RETURNING id";
        const LITE: &str = "
            INSERT INTO job_runs (queue, job_id, account_id, attempt, worker, started_at, finished_at, outcome, error_class, error)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id";
        match self.pool() {
            super::Pool::Postgres(p) => {
                let mut ids: Vec<i64> = sqlx::query_scalar(PG)
                    .bind(runs.iter().map(|(r, ..)| r.queue).collect::<Vec<_>>())
                    .bind(runs.iter().map(|(r, ..)| r.job_id).collect::<Vec<_>>())
                    .bind(runs.iter().map(|(r, ..)| r.account_id.map(|a| a.0)).collect::<Vec<_>>())
                    .bind(runs.iter().map(|(r, ..)| r.attempt).collect::<Vec<_>>())
                    .bind(runs.iter().map(|(r, ..)| r.worker).collect::<Vec<_>>())
                    .bind(runs.iter().map(|(_, at, _)| at.millis()).collect::<Vec<_>>())
                    .bind(runs.iter().map(|(.., e)| e.map(|e| e.at.millis())).collect::<Vec<_>>())
                    .bind(runs.iter().map(|(.., e)| e.map(|e| e.outcome.as_str())).collect::<Vec<_>>())
                    .bind(runs.iter().map(|(.., e)| e.and_then(|e| e.error_class.as_deref())).collect::<Vec<_>>())
                    .bind(runs.iter().map(|(.., e)| e.and_then(|e| e.error.as_deref())).collect::<Vec<_>>())
                    .fetch_all(p)
                    .await?;
                // The identity is drawn row by row in the insert's order (`ORDER BY ord`), so
                // the ids sorted are the runs' ids in order, whatever order RETURNING uses.
                ids.sort_unstable();
                Ok(ids)
            }
            super::Pool::Sqlite(_) => write_tx!(self, tx => {
                let mut ids = Vec::with_capacity(runs.len());
                for (run, at, end) in runs {
                    ids.push(sqlx::query_scalar(LITE)
                        .bind(run.queue).bind(run.job_id).bind(run.account_id).bind(run.attempt).bind(run.worker).bind(*at)
                        .bind(end.map(|e| e.at)).bind(end.map(|e| e.outcome)).bind(end.and_then(|e| e.error_class.as_deref())).bind(end.and_then(|e| e.error.as_deref()))
                        .fetch_one(&mut *tx).await?);
                }
                tx.commit().await?;
                Ok(ids)
            }),
        }
    }

    /// Records how several attempts ended, in one statement.
    pub async fn finish_job_runs(&self, ends: &[JobRunEnd]) -> Result<()> {
        // Planned anew each time (`persistent(false)`): a plan a pooled connection kept from
        // while the table was small joined every later group of ends to a scan of the whole
        // table — 15 ms a group at 120 000 runs, most of a 200 000-job drain — until an ANALYZE
        // replaced it (never, without autovacuum); a key condition beside the join did not
        // stop it once the table had a page or two. Planning is cheap beside that, once a group.
        const PG: &str = "
            UPDATE job_runs SET finished_at = e.finished_at, outcome = e.outcome, error_class = e.error_class, error = e.error
            FROM UNNEST($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[]) AS e (id, finished_at, outcome, error_class, error),
                (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit
            WHERE job_runs.id = e.id";
        const LITE: &str = "
            UPDATE job_runs SET finished_at = $2, outcome = $3, error_class = $4, error = $5
            WHERE id = $1";
        match self.pool() {
            super::Pool::Postgres(p) => {
                sqlx::query(PG)
                    .persistent(false)
                    .bind(ends.iter().map(|e| e.id).collect::<Vec<_>>())
                    .bind(ends.iter().map(|e| e.at.millis()).collect::<Vec<_>>())
                    .bind(ends.iter().map(|e| e.outcome.as_str()).collect::<Vec<_>>())
                    .bind(ends.iter().map(|e| e.error_class.as_deref()).collect::<Vec<_>>())
                    .bind(ends.iter().map(|e| e.error.as_deref()).collect::<Vec<_>>())
                    .execute(p)
                    .await?;
                Ok(())
            }
            super::Pool::Sqlite(_) => write_tx!(self, tx => {
                for e in ends {
                    sqlx::query(LITE).bind(e.id).bind(e.at).bind(e.outcome).bind(e.error_class.as_deref()).bind(e.error.as_deref())
                        .execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }),
        }
    }

    /// An account's latest attempts on any queue, newest first (the `(account_id, started_at)`
    /// index).
    pub async fn account_runs(&self, account: AccountId, limit: u32) -> Result<Vec<JobRun>> {
        const SQL: &str = "SELECT * FROM job_runs WHERE account_id = $1 ORDER BY started_at DESC, id DESC LIMIT $2";
        Ok(on_pool!(self, p => sqlx::query_as(SQL).bind(account).bind(i64::from(limit)).fetch_all(p).await?))
    }

    /// A job's attempts, in order.
    pub async fn job_runs(&self, job_id: &str) -> Result<Vec<JobRun>> {
        const SQL: &str = "SELECT * FROM job_runs WHERE job_id = $1 ORDER BY id";
        Ok(on_pool!(self, p => sqlx::query_as(SQL).bind(job_id).fetch_all(p).await?))
    }
}
