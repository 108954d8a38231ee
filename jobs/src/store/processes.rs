//! `worker_processes`: each worker process's row, written by its heartbeat, so ops can see
//! what runs where and which process went silent; and `ops_counters`, hourly counts of events
//! that leave no row elsewhere (the API's 429 answers).

use std::time::Duration;

use super::{Result, Store};
use crate::time::Timestamp;

/// A queue a process runs, and how many of its jobs at once.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessQueue {
    pub queue: String,
    pub concurrency: u32,
}

/// A worker process as it last reported itself.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct WorkerProcess {
    pub name: String,
    pub host: String,
    pub pid: i64,
    /// JSON list of [`ProcessQueue`].
    pub queues: String,
    pub started_at: Timestamp,
    pub last_seen: Timestamp,
    pub stale_after_ms: i64,
    pub stopped_at: Option<Timestamp>,
}

impl WorkerProcess {
    pub fn queue_list(&self) -> Vec<ProcessQueue> {
        serde_json::from_str(&self.queues).unwrap_or_default()
    }

    /// Silent for longer than its jobs are left to it (and not stopped cleanly).
    pub fn is_stale(&self, now: Timestamp) -> bool {
        self.stopped_at.is_none() && now.millis() - self.last_seen.millis() > self.stale_after_ms
    }
}

/// What a process says about itself at each heartbeat.
#[derive(Clone, Debug)]
pub struct ProcessBeat<'a> {
    pub name: &'a str,
    pub host: &'a str,
    pub pid: u32,
    pub queues: &'a [ProcessQueue],
    pub started_at: Timestamp,
    pub stale_after: Duration,
}

/// The `ops_counters` name of the API's 429 answers.
pub const API_429_COUNTER: &str = "api_429";

/// Stopped or silent processes are listed this long, then forgotten.
pub const FORGET_PROCESSES_AFTER: Duration = Duration::from_secs(86_400);

impl Store {
    /// Records a heartbeat of a worker process (idempotent).
    pub async fn beat_process(&self, beat: &ProcessBeat<'_>, now: Timestamp) -> Result<()> {
        const SQL: &str = "
            INSERT INTO worker_processes (name, host, pid, queues, started_at, last_seen, stale_after_ms)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (name) DO UPDATE SET last_seen = excluded.last_seen, queues = excluded.queues, stopped_at = NULL";
        let queues = serde_json::to_string(beat.queues).expect("plain data serializes");
        on_pool!(self, p => sqlx::query(SQL)
            .bind(beat.name).bind(beat.host).bind(i64::from(beat.pid)).bind(queues).bind(beat.started_at)
            .bind(now).bind(beat.stale_after.as_millis() as i64).execute(p).await?.rows_affected());
        Ok(())
    }

    /// Marks a process stopped (on graceful shutdown).
    pub async fn stop_process(&self, name: &str, now: Timestamp) -> Result<()> {
        const SQL: &str = "UPDATE worker_processes SET stopped_at = $2 WHERE name = $1";
        on_pool!(self, p => sqlx::query(SQL).bind(name).bind(now).execute(p).await?.rows_affected());
        Ok(())
    }

    /// Every process heard from within [`FORGET_PROCESSES_AFTER`], newest first.
    pub async fn worker_processes(&self, now: Timestamp) -> Result<Vec<WorkerProcess>> {
        const SQL: &str = "SELECT * FROM worker_processes WHERE last_seen >= $1 ORDER BY started_at DESC, name";
        Ok(on_pool!(self, p => sqlx::query_as(SQL).bind(now.minus(FORGET_PROCESSES_AFTER)).fetch_all(p).await?))
    }

    /// Deletes the rows of processes silent since before `before`; returns how many.
    pub async fn purge_worker_processes(&self, before: Timestamp) -> Result<u64> {
        const SQL: &str = "DELETE FROM worker_processes WHERE last_seen < $1";
        Ok(on_pool!(self, p => sqlx::query(SQL).bind(before).execute(p).await?.rows_affected()))
    }

    /// The jobs the process `name` holds now: (job id, queue, claimed at).
    pub async fn jobs_held_by(&self, name: &str) -> Result<Vec<(String, String, Option<Timestamp>)>> {
        let sql = self.pool().pick(
            "SELECT id, job_type, (extract(epoch FROM lock_at) * 1000)::bigint FROM apalis.jobs
             WHERE lock_by LIKE $1 ESCAPE '\\' AND status IN ('Queued', 'Running') ORDER BY lock_at",
            "SELECT id, job_type, lock_at * 1000 FROM Jobs
             WHERE lock_by LIKE $1 ESCAPE '\\' AND status IN ('Queued', 'Running') ORDER BY lock_at",
        );
        // apalis worker names are `{process}.{queue}`.
        let pattern = format!("{}.%", name.replace('%', "\\%").replace('_', "\\_"));
        Ok(on_pool!(self, p => sqlx::query_as(sql).bind(pattern).fetch_all(p).await?))
    }

    /// Adds one to the hourly counter `name`.
    pub async fn bump_counter(&self, name: &str, now: Timestamp) -> Result<()> {
        const SQL: &str = "
            INSERT INTO ops_counters (name, hour, count) VALUES ($1, $2, 1)
            ON CONFLICT (name, hour) DO UPDATE SET count = ops_counters.count + 1";
        let hour = now.millis() - now.millis().rem_euclid(3_600_000);
        on_pool!(self, p => sqlx::query(SQL).bind(name).bind(hour).execute(p).await?.rows_affected());
        Ok(())
    }

    /// The hourly counts of `name` since `since`: (hour start, count).
    pub async fn counter_hours(&self, name: &str, since: Timestamp) -> Result<Vec<(Timestamp, i64)>> {
        const SQL: &str = "SELECT hour, count FROM ops_counters WHERE name = $1 AND hour >= $2 ORDER BY hour";
        Ok(on_pool!(self, p => sqlx::query_as(SQL).bind(name).bind(since).fetch_all(p).await?))
    }
}
