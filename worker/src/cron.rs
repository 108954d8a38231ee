//! The nightly producers and the pruner. Every worker process runs this clock; each firing is claimed once in
//! `cron_runs` (insert-or-skip), so however many processes run, a firing produces its batch
//! once. At start, the latest firing that should have happened is claimed too, so one missed
//! while every worker was down is caught up (once).

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use jobs::{job::JobContext, pauses::Target, retention, sweeps, time::Timestamp};
use tokio_util::sync::CancellationToken;

use crate::pauses::Paused;

#[derive(Clone, Debug)]
pub struct CronConfig {
    /// Cron expressions (5 fields, or 6 with seconds first).
    pub refresh_schedule: String,
    pub sync_schedule: String,
    /// The pruner's passes (`jobs::retention`).
    pub prune_schedule: String,
    pub timezone: Tz,
    /// Accounts per enqueue statement.
    pub chunk: u32,
    /// A missed firing older than this is not caught up.
    pub catch_up_within: Duration,
}

impl Default for CronConfig {
    fn default() -> Self {
        Self {
            refresh_schedule: "0 2 * * *".into(),
            sync_schedule: "0 3 * * *".into(),
            prune_schedule: PRUNE_EVERY_TEN_MINUTES.into(),
            timezone: Tz::UTC,
            chunk: jobs::sweeps::CHUNK,
            catch_up_within: Duration::from_secs(24 * 3600),
        }
    }
}

pub use jobs::schedule::{parse, previous};

/// The pruner's default schedule: often enough that each pass deletes only minutes of history.
pub const PRUNE_EVERY_TEN_MINUTES: &str = "*/10 * * * *";

pub async fn run(cx: JobContext, cfg: CronConfig, paused: Paused, shutdown: CancellationToken) {
    let mut schedules = vec![];
    let all = [(sweeps::REFRESH_SWEEP, &cfg.refresh_schedule), (sweeps::SYNC_SWEEP, &cfg.sync_schedule), (retention::PRUNE, &cfg.prune_schedule)];
    for (name, expr) in all {
        match parse(expr) {
            Ok(s) => schedules.push((name, s)),
            Err(e) => tracing::error!(schedule = name, error = %e, "schedule disabled"),
        }
    }
    let tasks: Vec<_> = schedules
        .into_iter()
        .map(|(name, schedule)| tokio::spawn(run_schedule(cx.clone(), cfg.clone(), paused.clone(), name, schedule, shutdown.clone())))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

async fn run_schedule(cx: JobContext, cfg: CronConfig, paused: Paused, name: &'static str, schedule: cron::Schedule, shutdown: CancellationToken) {
    let now = cx.now().to_datetime();
    if let Some(missed) = previous(&schedule, cfg.timezone, now, cfg.catch_up_within) {
        fire(&cx, &cfg, &paused, name, missed, true).await;
    }
    loop {
        let now = cx.now().to_datetime();
        let Some(next) = schedule.after(&now.with_timezone(&cfg.timezone)).next().map(|t| t.with_timezone(&Utc)) else { return };
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        fire(&cx, &cfg, &paused, name, next, false).await;
    }
}

/// Claims one firing and, if this process won it, runs it — or records it skipped, when ops
/// have paused the schedule (it is not caught up on resume: "Run now" on the dashboard is).
async fn fire(cx: &JobContext, cfg: &CronConfig, paused: &Paused, name: &'static str, at: DateTime<Utc>, catch_up: bool) {
    let at = Timestamp::from(at);
    let claimed = match cx.store.claim_cron_run(name, at, &cx.worker, cx.now()).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(schedule = name, fire_at = %at, error = %e, "cannot claim the firing");
            return;
        }
    };
    if !claimed {
        tracing::debug!(schedule = name, fire_at = %at, catch_up, "firing claimed by another process");
        return;
    }
    if let Some(p) = paused.on(Target::Schedule(name)) {
        tracing::warn!(schedule = name, fire_at = %at, "firing skipped: paused {}", p.describe());
        let outcome = format!("skipped: paused {}", p.describe());
        if let Err(e) = cx.store.finish_cron_run(name, at, None, &outcome, None, cx.now()).await {
            tracing::error!(schedule = name, error = %e, "cannot record the firing's outcome");
        }
        return;
    }
    tracing::info!(schedule = name, fire_at = %at, catch_up, "firing started");
    match sweeps::run_claimed(cx, name, at, cfg.chunk).await {
        Ok(f) => tracing::info!(schedule = name, fire_at = %at, jobs = f.jobs, detail = f.detail, "firing finished"),
        Err(outcome) => tracing::error!(schedule = name, fire_at = %at, outcome = %outcome, "firing failed"),
    }
}
