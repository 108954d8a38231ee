//! The queues of a process: on PostgreSQL socialsync's claim loop ([`crate::claim_loop`]), on
//! SQLite apalis' storage and a worker per queue; and the heartbeat that keeps them alive.
//!
//! Settings that make apalis meet DESIGN.md §10: queue names from each job's `KIND`; a
//! heartbeat of `poll_interval`; orphans rescued after `orphan_after`; workers named per
//! process; a failed worker restarted by the monitor.
//!
//! Claimed jobs stay `Queued` while they run (`lock_tasks(false)`, as in the claim loop): the
//! claim already holds them (`lock_by`, `lock_at`), and the orphan rescue, the dashboard and
//! `end_attempt` treat `Queued` and `Running` alike. apalis' separate `Running` write would be
//! one more row update per job; on SQLite it is worse, a later batched write that does not
//! check `run_at`, so it could land after the attempt's end and re-lock a job waiting for its
//! retry.
//!
//! Every storage is also woken every `poll_interval` (`poll_with_interval`). apalis fetches
//! when its heartbeat timer fires, but a timer that fires while a fetch is in flight is not
//! polled again: after that fetch comes back empty the worker sleeps until a job of its own
//! ends — forever, on an idle queue. A job waiting for its retry was left unrun that way (the
//! flaky SQLite retry test); the interval wake-up closes the gap.

use std::sync::Arc;

use apalis::prelude::*;
use apalis_sqlite::SqliteStorage;
use jobs::{
    connect, events, notify, refresh,
    store::{Pool, ProcessBeat, ProcessQueue},
    sync,
};
use serde_json::Value;

use crate::{QueueConfig, SHUTDOWN_GRACE, WorkerSetup, attempt::QueueRuntime};

/// The queues, with their settings.
fn queues(setup: &WorkerSetup) -> [(&'static str, QueueConfig); 5] {
    let c = &setup.config;
    [(connect::KIND, c.connect), (refresh::KIND, c.refresh), (sync::KIND, c.sync), (notify::KIND, c.notify), (events::KIND, c.events)]
}

/// The apalis handler of every SQLite queue: one attempt, its end written by [`crate::attempt`].
async fn handle(args: Value, task_id: TaskId, attempt: Attempt, rt: Data<Arc<QueueRuntime>>) -> Result<(), BoxDynError> {
    let rt: Arc<QueueRuntime> = (*rt).clone();
    // A paused queue's (or platform's) fetched jobs wait here, unstarted, held by this worker
    // (at most a batch), as do those beyond a live concurrency set lower than apalis' own. At
    // a shutdown meanwhile they are left to the orphan rescue.
    until_unpaused(&rt, &args).await;
    let _slot = rt.slots.acquire().await;
    match crate::attempt::run(rt.clone(), task_id.to_string(), attempt.current() as i32, args).await? {
        // apalis acknowledges the success once this returns.
        crate::attempt::Ended::Succeeded(run, ending) => rt.runs.end(run, ending).await.map_err(Into::into),
        crate::attempt::Ended::Recorded => Ok(()),
    }
}

/// Returns once no pause holds the job. Its account's platform is read only if a platform's
/// jobs of its queue are paused: SQLite's claim cannot pass over them as PostgreSQL's does, so
/// they hold their slots meanwhile (ARCHITECTURE.md, Pauses).
async fn until_unpaused(rt: &QueueRuntime, args: &Value) {
    let mut platform = None;
    let mut changes = rt.paused.clone();
    loop {
        if platform.is_none() && !rt.paused.paused_platforms(rt.kind).is_empty() {
            platform = Some(platform_of(rt, args).await);
        }
        if rt.paused.holding(rt.kind, platform.flatten()).is_none() {
            return;
        }
        changes.changed().await;
    }
}

/// The platform of the account a job is about, if it names one that exists.
async fn platform_of(rt: &QueueRuntime, args: &Value) -> Option<jobs::Platform> {
    let id = jobs::AccountId(args.get("account_id")?.as_i64()?);
    rt.cx.store.account(id).await.ok().flatten().map(|a| a.platform)
}

/// A queue's slots, following its live concurrency (at most `max`) for the process's life.
fn live_slots(kind: &'static str, q: QueueConfig, paused: crate::pauses::Paused, max: usize) -> Arc<crate::slots::LiveSlots> {
    let slots = crate::slots::LiveSlots::new(q.concurrency.max(1));
    tokio::spawn(crate::slots::follow(slots.clone(), paused, kind, q.concurrency.max(1), max.min(jobs::store::MAX_LIVE_CONCURRENCY as usize)));
    slots
}

/// The apalis worker name of `kind` in this process, on its first run.
fn worker_name(setup: &WorkerSetup, kind: &str) -> String {
    format!("{}.{kind}", setup.context.worker)
}

/// The name each queue worker runs under now, by first name. A worker restarted after a
/// failure (the database went away mid-poll) runs under a new name, `{first}.{restarts}`: the
/// jobs its previous incarnation had fetched died with it, still locked by the old name, and
/// only an old name that stops beating lets the orphan rescue give them to a live worker.
static CURRENT_NAMES: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, String>>> = std::sync::LazyLock::new(Default::default);

pub(crate) fn incarnation(first: &str, restarts: usize) -> String {
    let name = if restarts == 0 { first.to_owned() } else { format!("{first}.{restarts}") };
    CURRENT_NAMES.lock().expect("not poisoned").insert(first.to_owned(), name.clone());
    name
}

fn current_name(first: String) -> String {
    CURRENT_NAMES.lock().expect("not poisoned").get(&first).cloned().unwrap_or(first)
}

/// Keeps this process's workers' heartbeats fresh while it lives, whether or not apalis polls
/// (see `Store::touch_workers`): a worker is declared dead only when its process is.
pub async fn keep_alive(setup: WorkerSetup, shutdown: tokio_util::sync::CancellationToken) {
    let every = setup.config.poll_interval.min(setup.config.orphan_after / 4).max(std::time::Duration::from_millis(50));
    let mut tick = tokio::time::interval(every);
    let mut last_depth = std::time::Instant::now() - DEPTH_EVERY;
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let store = &setup.context.store;
    let (host, started_at) = (crate::hostname(), jobs::Timestamp::now());
    let process_queues: Vec<ProcessQueue> =
        queues(&setup).iter().map(|(kind, q)| ProcessQueue { queue: (*kind).to_owned(), concurrency: q.concurrency as u32 }).collect();
    let beat = ProcessBeat {
        name: &setup.context.worker,
        host: &host,
        pid: std::process::id(),
        queues: &process_queues,
        started_at,
        stale_after: setup.config.orphan_after,
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let names: Vec<String> = queues(&setup).iter().map(|(kind, _)| current_name(worker_name(&setup, kind))).collect();
        if let Err(e) = store.touch_workers(&names).await {
            tracing::warn!(error = %e, "cannot refresh the workers' heartbeat");
        }
        match store.beat_process(&beat, jobs::Timestamp::now()).await {
            // The alert on a silent fleet reads this: a process that runs but cannot reach the
            // database stops moving it.
            Ok(()) => metrics::gauge!("socialsync_worker_heartbeat_timestamp_seconds").set(jobs::Timestamp::now().millis() as f64 / 1000.0),
            Err(e) => tracing::debug!(error = %e, "cannot record the process heartbeat"),
        }
        if last_depth.elapsed() >= DEPTH_EVERY {
            last_depth = std::time::Instant::now();
            record_depth(&setup).await;
        }
    }
    if let Err(e) = store.stop_process(beat.name, jobs::Timestamp::now()).await {
        tracing::debug!(error = %e, "cannot record the process's stop");
    }
}

/// How often a process samples queue depth for its metrics.
const DEPTH_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

async fn record_depth(setup: &WorkerSetup) {
    let store = &setup.context.store;
    for (kind, _) in queues(setup) {
        match tokio::try_join!(store.queue_depth(kind), store.oldest_due(kind)) {
            Ok((counts, oldest)) => {
                for (status, n) in counts {
                    metrics::gauge!("socialsync_queue_jobs", "queue" => kind, "status" => status).set(n as f64);
                }
                let waited = oldest.map_or(0.0, |t| (jobs::Timestamp::now().millis() - t.millis()).max(0) as f64 / 1000.0);
                metrics::gauge!("socialsync_queue_oldest_due_seconds", "queue" => kind).set(waited);
            }
            Err(e) => tracing::debug!(error = %e, "cannot sample queue depth"),
        }
    }
}

/// Runs every queue until `shutdown`, then gives running jobs [`SHUTDOWN_GRACE`]: on
/// PostgreSQL with socialsync's claim loop ([`crate::claim_loop`]), on SQLite with apalis'
/// monitor and a worker per queue.
pub async fn run(setup: &WorkerSetup, paused: crate::pauses::Paused, shutdown: tokio_util::sync::CancellationToken) -> Result<(), String> {
    let cfg = &setup.config;
    let runs = crate::run_log::RunLog::new(setup.context.store.clone());
    let pool = match setup.context.store.pool().clone() {
        Pool::Postgres(pool) => pool,
        Pool::Sqlite(pool) => {
            let signal = async move {
                shutdown.cancelled().await;
                Ok(())
            };
            return sqlite_monitor(setup, pool, runs, paused).run_with_signal(signal).await.map_err(|e| e.to_string());
        }
    };
    let wakers: std::collections::HashMap<&'static str, Arc<tokio::sync::Notify>> = queues(setup).iter().map(|(kind, _)| (*kind, Default::default())).collect();
    let listener = tokio::spawn(crate::claim_loop::listen(pool.clone(), wakers.clone(), cfg.poll_interval, shutdown.clone()));
    let kinds = queues(setup).iter().map(|(kind, _)| *kind).collect();
    let rescue = tokio::spawn(crate::claim_loop::rescue_loop(pool.clone(), kinds, cfg.poll_interval, cfg.orphan_after, shutdown.clone()));
    let loops: Vec<_> = queues(setup)
        .into_iter()
        .map(|(kind, q)| {
            let slots = live_slots(kind, q, paused.clone(), crate::claim_loop::OPEN_PER_SLOT * q.concurrency.max(1));
            let rt = QueueRuntime::new(setup, kind, worker_name(setup, kind), q, runs.clone(), paused.clone(), slots);
            tokio::spawn(crate::claim_loop::run_queue(pool.clone(), rt, q, cfg.poll_interval, wakers[kind].clone(), shutdown.clone()))
        })
        .collect();
    for l in loops {
        l.await.map_err(|e| e.to_string())?;
    }
    let _ = listener.await;
    let _ = rescue.await;
    Ok(())
}

/// apalis' monitor with a worker per queue on SQLite, ready to run.
fn sqlite_monitor(setup: &WorkerSetup, pool: sqlx::SqlitePool, runs: crate::run_log::RunLog, paused: crate::pauses::Paused) -> Monitor {
    let cfg = &setup.config;
    let missed = (cfg.orphan_after.as_millis() / cfg.poll_interval.as_millis().max(1)).max(2) as usize;
    let mut monitor = Monitor::new()
        .shutdown_timeout(SHUTDOWN_GRACE)
        .should_restart(|ctx, err| {
            tracing::error!(worker = %ctx.name(), error = %err, "queue worker failed; restarting it");
            true
        });
    for (kind, q) in queues(setup) {
        let first = worker_name(setup, kind);
        let poll = cfg.poll_interval;
        // apalis' worker runs at most its configured concurrency: live, a queue can only go lower.
        let slots = live_slots(kind, q, paused.clone(), q.concurrency.max(1));
        let (pool, setup, runs, paused) = (pool.clone(), setup.clone(), runs.clone(), paused.clone());
        monitor = monitor.register(move |restarts| {
            let name = incarnation(&first, restarts);
            let rt = QueueRuntime::new(&setup, kind, name.clone(), q, runs.clone(), paused.clone(), slots.clone());
            let config = apalis_sqlite::Config::default()
                .lock_tasks(false)
                .queue(kind)
                .batch_size(q.batch.max(1))
                .heartbeat_interval(poll)
                .missed_heartbeats(missed);
            let storage = SqliteStorage::<Value>::new(&pool).with_config(config).poll_with_interval(poll);
            WorkerBuilder::new(name).backend(storage).data(rt).concurrency(q.concurrency.max(1)).build(handle)
        });
    }
    monitor
}
