//! The nightly safety nets: enqueue a refresh for every active account whose token expires
//! within a week and whose planned refresh falls before the next sweep (or is missing) — at
//! its planned time, or now if that has passed — and a sync for every active account not
//! synced for 12 hours. Both page by
//! id and enqueue a chunk per statement; syncs get run times one pacing spacing apart, after
//! those already planned, so the queue holds no jobs that would only wait for the gate.
//!
//! [`run`] runs any schedule's firing by name: these two and the pruner ([`retention`]).

use std::{collections::HashMap, time::Duration};

use crate::{
    domain::{AccountId, Platform},
    job::JobContext,
    refresh, retention,
    store::{JobIds, Result},
    sync::{self, SyncReason},
    time::Timestamp,
};

/// Schedule names, as stored in `cron_runs`: never rename.
pub const REFRESH_SWEEP: &str = "token_refresh";
pub const SYNC_SWEEP: &str = "data_sync";

pub const REFRESH_HORIZON: Duration = Duration::from_secs(7 * 86_400);
/// A planned refresh before this much from now is (re)queued by the sweep: the next sweep
/// would be too late for it.
pub const PLAN_WINDOW: Duration = Duration::from_secs(86_400);
pub const SYNC_STALE_AFTER: Duration = Duration::from_secs(12 * 3600);
/// Accounts per page, and jobs per enqueueing statement. Each statement has a fixed cost of
/// some 30 ms here beside its rows: 100 000 syncs took 5.6–5.9 s in pages of 1 000, 2.9 s in
/// pages of 5 000 and 3.3 s in pages of 20 000 (measured 2026-11-27 at 15ee12a).
pub const CHUNK: u32 = 5_000;

/// What a firing did: the jobs a sweep enqueued and the range of their ids ([`JobIds`] as
/// JSON, in `cron_runs.detail`: which syncs were the nightly sweep's), or what the pruner
/// removed (its [`retention::PruneReport`] as JSON).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fired {
    pub jobs: Option<u64>,
    pub detail: Option<String>,
}

/// Runs the firing of the schedule named `schedule` ([`REFRESH_SWEEP`], [`SYNC_SWEEP`] or
/// [`retention::PRUNE`]); `None` for an unknown name.
pub async fn run(cx: &JobContext, schedule: &str, chunk: u32) -> Option<Result<Fired>> {
    // The system clock, as job ids have it, whatever the context's clock says.
    let started = Timestamp::now();
    let jobs = |n: Result<u64>| {
        let ids = serde_json::to_string(&JobIds::between(started, Timestamp::now())).expect("plain data serializes");
        n.map(|n| Fired { jobs: Some(n), detail: Some(ids) })
    };
    Some(match schedule {
        REFRESH_SWEEP => jobs(refresh_sweep(cx, chunk).await),
        SYNC_SWEEP => jobs(sync_sweep(cx, chunk).await),
        retention::PRUNE => retention::prune(&cx.store, &cx.settings.retention, cx.now(), retention::BATCH).await.map(|r| {
            tracing::info!(target: "retention", removed = r.total(), millis = r.millis, "pruned history past its retention");
            Fired { jobs: None, detail: Some(serde_json::to_string(&r).expect("plain data serializes")) }
        }),
        _ => return None,
    })
}

/// Runs a firing of `schedule` that the caller has claimed in `cron_runs` (fired for
/// `fire_at`), and records how it ended there. `Err` carries the outcome as recorded.
pub async fn run_claimed(cx: &JobContext, schedule: &str, fire_at: Timestamp, chunk: u32) -> std::result::Result<Fired, String> {
    let result = match run(cx, schedule, chunk).await {
        Some(Ok(fired)) => Ok(fired),
        Some(Err(e)) => Err(format!("failed: {e}")),
        None => Err(format!("failed: no schedule is named {schedule}")),
    };
    let (jobs, detail, outcome) = match &result {
        Ok(f) => (f.jobs, f.detail.as_deref(), "ok"),
        Err(e) => (None, None, e.as_str()),
    };
    if let Err(e) = cx.store.finish_cron_run(schedule, fire_at, jobs.map(|n| n as i64), outcome, detail, cx.now()).await {
        tracing::error!(schedule, error = %e, "cannot record the firing's outcome");
    }
    result
}

/// Enqueues the refresh sweep; returns how many jobs it created.
pub async fn refresh_sweep(cx: &JobContext, chunk: u32) -> Result<u64> {
    let (store, now) = (&cx.store, cx.now());
    let page = |after| store.accounts_due_for_refresh(now.plus(REFRESH_HORIZON), now.plus(PLAN_WINDOW), after, chunk);
    let (mut due, mut created, mut seen) = (page(AccountId(0)).await?, 0u64, 0u64);
    while let Some(last) = due.last() {
        seen += due.len() as u64;
        let jobs: Vec<_> = due.iter().map(|(id, planned)| refresh::job(*id, cx.real(planned.unwrap_or(now).max(now)), now)).collect();
        // The next page (later accounts than this write touches) is read while this one is written.
        let (enqueued, next) = tokio::join!(store.enqueue_many(&jobs), page(last.0));
        (created, due) = (created + enqueued?, next?);
        tracing::info!(target: "token_refresh", enqueued = created, scanned = seen, "refresh sweep progress");
    }
    Ok(created)
}

/// Enqueues the sync sweep; returns how many jobs it created.
pub async fn sync_sweep(cx: &JobContext, chunk: u32) -> Result<u64> {
    let (store, settings, now) = (&cx.store, &cx.settings, cx.now());
    let page = |after| store.accounts_stale_for_sync(now.minus(SYNC_STALE_AFTER), after, chunk);
    let (mut rows, mut created, mut seen) = (page(AccountId(0)).await?, 0u64, 0u64);
    // Where each platform's spread continues; it starts where the gate stands.
    let mut next: HashMap<Platform, Timestamp> = HashMap::new();
    while let Some(&(last, _)) = rows.last() {
        seen += rows.len() as u64;
        let mut by_platform: HashMap<Platform, Vec<AccountId>> = HashMap::new();
        for (id, platform) in std::mem::take(&mut rows) {
            by_platform.entry(platform).or_default().push(id);
        }
        let mut jobs = Vec::new();
        for (platform, ids) in by_platform {
            let spacing = settings.spacing(platform) + settings.pacing_margin;
            let start = match next.get(&platform) {
                Some(t) => *t,
                None => store.pacing_next_at(platform.as_str()).await?.unwrap_or(now).max(now),
            };
            for (i, id) in ids.iter().enumerate() {
                jobs.push(sync::job(*id, SyncReason::Nightly, cx.real(start.plus(spacing * i as u32))));
            }
            next.insert(platform, start.plus(spacing * ids.len() as u32));
        }
        // The next page (later accounts than this write touches) is read while this one is written.
        let (enqueued, following) = tokio::join!(store.enqueue_many(&jobs), page(last));
        (created, rows) = (created + enqueued?, following?);
        tracing::info!(target: "data_sync", enqueued = created, scanned = seen, "sync sweep progress");
    }
    Ok(created)
}
