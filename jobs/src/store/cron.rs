//! `cron_runs`: the once-only record of each firing of each schedule. Every process runs the
//! cron clock; the first to insert `(schedule, fire_at)` owns that firing, the rest skip it.

use super::{Result, Store};
use crate::time::Timestamp;

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct CronRun {
    pub schedule: String,
    pub fire_at: Timestamp,
    pub claimed_by: String,
    pub claimed_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub jobs_enqueued: Option<i64>,
    pub outcome: Option<String>,
    /// What the firing did beyond enqueueing (the pruner: rows removed per table, JSON).
    pub detail: Option<String>,
}

impl Store {
    /// Claims one firing. `true` for exactly one caller however many race.
    pub async fn claim_cron_run(&self, schedule: &str, fire_at: Timestamp, owner: &str, now: Timestamp) -> Result<bool> {
        const SQL: &str = "
            INSERT INTO cron_runs (schedule, fire_at, claimed_by, claimed_at) VALUES ($1, $2, $3, $4)
            ON CONFLICT (schedule, fire_at) DO NOTHING";
        let done = on_pool!(self, p => sqlx::query(SQL)
            .bind(schedule).bind(fire_at).bind(owner).bind(now).execute(p).await?.rows_affected());
        Ok(done == 1)
    }

    pub async fn finish_cron_run(
        &self,
        schedule: &str,
        fire_at: Timestamp,
        jobs_enqueued: Option<i64>,
        outcome: &str,
        detail: Option<&str>,
        now: Timestamp,
    ) -> Result<()> {
        const SQL: &str = "
            UPDATE cron_runs SET finished_at = $3, jobs_enqueued = $4, outcome = $5, detail = $6
            WHERE schedule = $1 AND fire_at = $2";
        on_pool!(self, p => sqlx::query(SQL)
            .bind(schedule).bind(fire_at).bind(now).bind(jobs_enqueued).bind(outcome).bind(detail).execute(p).await?.rows_affected());
        Ok(())
    }

    /// The latest claimed firing of a schedule (what start-up catch-up compares against).
    pub async fn last_cron_run(&self, schedule: &str) -> Result<Option<CronRun>> {
        const SQL: &str = "SELECT * FROM cron_runs WHERE schedule = $1 ORDER BY fire_at DESC LIMIT 1";
        Ok(on_pool!(self, p => sqlx::query_as(SQL).bind(schedule).fetch_optional(p).await?))
    }

    /// The latest firings of a schedule, newest first.
    pub async fn cron_runs(&self, schedule: &str, limit: u32) -> Result<Vec<CronRun>> {
        const SQL: &str = "SELECT * FROM cron_runs WHERE schedule = $1 ORDER BY fire_at DESC LIMIT $2";
        Ok(on_pool!(self, p => sqlx::query_as(SQL).bind(schedule).bind(i64::from(limit)).fetch_all(p).await?))
    }
}
