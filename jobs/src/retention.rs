//! How long history is kept, and the pruner pass that deletes what is older.
//!
//! The pass runs as a cron firing ([`PRUNE`], every ten minutes by default), claimed once
//! fleet-wide like the sweeps, so one process prunes at a time. It deletes in bounded batches
//! (see `store::prune`), a short transaction each, table after table; a pass cut off anywhere
//! leaves only less deleted, which the next one finishes. Frequent passes keep each one small:
//! ten minutes of a 100 000-account platform's history is a few thousand rows a table. Each
//! pass first rolls the run records up (`store::rollups`), so the figures ops read for 90 days
//! outlive the 30 days of records.

use std::{collections::BTreeMap, future::Future, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{
    store::{Finished, Result, Store},
    time::Timestamp,
};

/// The schedule's name in `cron_runs`: never rename.
pub const PRUNE: &str = "prune";

/// Rows per deleting statement: a few milliseconds of work, so a batch never holds locks or
/// (SQLite) the write lock for long.
pub const BATCH: u32 = 5_000;

/// How long each kind of history is kept; `None` keeps it forever.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Succeeded jobs, on their queue (their page, their arguments, their result).
    pub done_jobs: Option<Duration>,
    /// Dead and cancelled jobs (kept longer: ops retry them).
    pub dead_jobs: Option<Duration>,
    /// Attempt records (`job_runs`).
    pub job_runs: Option<Duration>,
    /// Every snapshot of an account's figures is kept this long…
    pub snapshots: Option<Duration>,
    /// …then the last of each day per account, until this old.
    pub daily_snapshots: Option<Duration>,
    /// Delivered notifications (undelivered ones are kept).
    pub notifications: Option<Duration>,
    /// Firings of the schedules (each schedule's latest is always kept).
    pub cron_runs: Option<Duration>,
    /// Rows of worker processes silent this long (one that still holds a job stays until its
    /// job is rescued).
    pub workers: Option<Duration>,
    /// The audit trail of ops' actions and sign-ins.
    pub audit: Option<Duration>,
}

const DAY: Duration = Duration::from_secs(86_400);

impl Default for Retention {
    fn default() -> Self {
        Self {
            done_jobs: Some(DAY * 7),
            dead_jobs: Some(DAY * 30),
            job_runs: Some(DAY * 30),
            snapshots: Some(DAY * 30),
            daily_snapshots: Some(DAY * 730),
            notifications: Some(DAY * 30),
            cron_runs: Some(DAY * 90),
            workers: Some(DAY),
            audit: Some(DAY * 365),
        }
    }
}

/// What one pass removed, per table, and how long it took.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneReport {
    pub removed: BTreeMap<String, u64>,
    pub millis: u64,
    /// SQLite pages returned to the file system.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pages_released: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl PruneReport {
    pub fn total(&self) -> u64 {
        self.removed.values().sum()
    }

    fn add(&mut self, table: &str, n: u64) {
        *self.removed.entry(table.to_owned()).or_default() += n;
    }
}

/// A finished attempt's hour is rolled up this long after it ends: time for a run that finished
/// within it, on a worker whose clock is a little behind, to be committed.
pub const ROLL_UP_AFTER: Duration = Duration::from_secs(15 * 60);

/// Roll-ups (hourly attempt counts, nightly sync figures: a few hundred rows a day) are kept
/// this long.
pub const ROLLUPS_KEPT: Duration = Duration::from_secs(730 * 86_400);

/// How far snapshots have been thinned (`retention_marks`).
const SNAPSHOTS_THINNED: &str = "snapshots_thinned";

/// One pruner pass at `now`.
pub async fn prune(store: &Store, keep: &Retention, now: Timestamp, batch: u32) -> Result<PruneReport> {
    let started = std::time::Instant::now();
    let mut report = PruneReport::default();
    let before = |d: Duration| now.minus(d);
    // Roll-ups first; the runs they are computed from are never deleted before they are rolled
    // up (below the mark) nor before a nightly firing's day is over and fixed.
    let rolled_up = store.roll_up_job_runs(now.minus(ROLL_UP_AFTER)).await?;
    let day_over = now.minus(DAY + ROLL_UP_AFTER);
    store.roll_up_nightly_syncs(crate::sweeps::SYNC_SWEEP, day_over).await?;
    if let Some(d) = keep.job_runs {
        let runs_before = before(d).min(day_over).min(rolled_up);
        report.add("job_runs", drain("job_runs", batch, || store.prune_job_runs(runs_before, batch)).await?);
    }
    for queue in crate::QUEUES {
        for (which, d) in [(Finished::Done, keep.done_jobs), (Finished::Dead, keep.dead_jobs), (Finished::Killed, keep.dead_jobs)] {
            if let Some(d) = d {
                report.add("jobs", drain("jobs", batch, || store.prune_finished_jobs(queue, which, before(d), batch)).await?);
            }
        }
    }
    if let Some(d) = keep.notifications {
        report.add("notifications", drain("notifications", batch, || store.prune_notifications(before(d), batch)).await?);
    }
    if let Some(d) = keep.snapshots {
        report.add("account_snapshots", thin_snapshots(store, before(d), batch).await?);
    }
    if let Some(d) = keep.daily_snapshots {
        report.add("account_snapshots", drain("account_snapshots", batch, || store.prune_snapshots(before(d), batch)).await?);
    }
    if let Some(d) = keep.cron_runs {
        report.add("cron_runs", store.prune_cron_runs(before(d)).await?);
    }
    report.add("rollups", store.prune_rollups(before(ROLLUPS_KEPT)).await?);
    if let Some(d) = keep.workers {
        report.add("workers", store.prune_workers(before(d)).await?);
    }
    if let Some(d) = keep.audit {
        report.add("audit_log", drain("audit_log", batch, || store.prune_audit(before(d), batch)).await?);
    }
    report.pages_released = store.release_free_pages().await?;
    report.millis = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Runs `step` (one batch) until a batch deletes fewer than `batch` rows; returns the total.
/// Says how far it got every 100 000 rows, so a first pass over a year of history is seen
/// to progress.
async fn drain<F, Fut>(table: &str, batch: u32, mut step: F) -> Result<u64>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64>>,
{
    let mut total = 0;
    loop {
        let n = step().await?;
        total += n;
        if n < u64::from(batch) {
            return Ok(total);
        }
        if total % 100_000 < u64::from(batch) {
            tracing::info!(target: "retention", table, removed = total, "pruning");
        }
    }
}

/// Thins the snapshots taken since the last pass's boundary up to `before` to the last of each
/// account's day, then moves the boundary there. The boundary is saved every batch, so a pass
/// cut off resumes where it stopped rather than rereading what it kept.
async fn thin_snapshots(store: &Store, before: Timestamp, batch: u32) -> Result<u64> {
    let mut from = store.retention_mark(SNAPSHOTS_THINNED).await?.unwrap_or(Timestamp(0));
    let mut total = 0;
    while from < before {
        let (n, last) = store.thin_snapshots(from, before, batch).await?;
        total += n;
        match last {
            Some(last) if n == u64::from(batch) => {
                from = last;
                store.set_retention_mark(SNAPSHOTS_THINNED, from).await?;
            }
            _ => break,
        }
    }
    // Never backwards: after a longer retention is set, what was thinned stays so.
    if from < before {
        store.set_retention_mark(SNAPSHOTS_THINNED, before).await?;
    }
    Ok(total)
}
