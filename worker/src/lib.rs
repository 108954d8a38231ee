//! The job runtime: a worker per queue in each process, the cron producers.
//!
//! - [`queues`]: the queues' workers, a unique worker name per process, their heartbeat.
//! - [`claim_loop`]: the PostgreSQL queues — claims as slots free up, successes acknowledged in
//!   groups, LISTEN/NOTIFY plus a short poll, orphan rescue within seconds. SQLite runs
//!   apalis' own worker.
//! - [`attempt`]: runs one attempt of a job and writes its end durably (retry with backoff,
//!   dead, killed, deferred) — what apalis would otherwise re-run at once.
//! - [`run_log`]: the attempts' run records, written in groups by one task per process.
//! - [`cron`]: the nightly sweeps, each firing claimed once fleet-wide, missed ones caught up.
//! - [`pauses`]: what ops have paused, and the queues' live concurrency, as this process last
//!   heard them; [`slots`]: a queue's attempts at once, resizable while they run.

pub mod attempt;
pub mod claim_loop;
pub mod cron;
pub mod pauses;
pub mod queues;
pub mod run_log;
pub mod slots;

use std::time::Duration;

use jobs::job::JobContext;
pub use tokio_util::sync::CancellationToken;

/// How long running jobs get to finish after shutdown is asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Concurrency, claim batch and attempt timeout of one queue.
#[derive(Clone, Copy, Debug)]
pub struct QueueConfig {
    pub concurrency: usize,
    /// Most jobs claimed at once: on PostgreSQL the free slots plus as many as ended during the
    /// last claim, at most this; on SQLite apalis claims this many per fetch, so near the
    /// concurrency, lest a worker hoard long jobs.
    pub batch: usize,
    /// An attempt running longer is abandoned and retried (platform calls have their own,
    /// shorter timeouts; this bounds the whole job).
    pub timeout: Duration,
}

impl QueueConfig {
    pub const fn new(concurrency: usize, timeout_secs: u64) -> Self {
        Self { concurrency, batch: concurrency, timeout: Duration::from_secs(timeout_secs) }
    }
}

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub connect: QueueConfig,
    pub refresh: QueueConfig,
    pub sync: QueueConfig,
    pub notify: QueueConfig,
    /// What the platforms told the app (revocations).
    pub events: QueueConfig,
    /// How often an idle worker looks for due jobs (also its heartbeat). PostgreSQL workers
    /// also hear new jobs at once through LISTEN/NOTIFY.
    pub poll_interval: Duration,
    /// A worker silent this long is dead; its jobs are run again elsewhere.
    pub orphan_after: Duration,
    /// First retry wait; it doubles per attempt (with jitter) up to `retry_cap`.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    pub cron: cron::CronConfig,
    /// What runs each attempt: [`attempt::dispatch`], but in benchmarks of the runtime alone.
    pub handler: attempt::Handler,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            connect: QueueConfig::new(4, 120),
            refresh: QueueConfig::new(8, 120),
            sync: QueueConfig::new(8, 600),
            notify: QueueConfig::new(4, 60),
            events: QueueConfig::new(2, 60),
            poll_interval: Duration::from_millis(500),
            orphan_after: Duration::from_secs(5),
            retry_base: Duration::from_secs(5),
            retry_cap: Duration::from_secs(3600),
            cron: cron::CronConfig::default(),
            handler: attempt::dispatch,
        }
    }
}

/// Identity and wiring of one worker process.
#[derive(Clone)]
pub struct WorkerSetup {
    /// Its `worker` is this process's unique name (see [`process_name`]), so a restarted
    /// process never inherits its predecessor's jobs: they are rescued as orphans instead.
    pub context: JobContext,
    pub config: WorkerConfig,
}

/// A name unique to this process: host, pid and a random suffix.
pub fn process_name() -> String {
    let host = hostname();
    let suffix: String = jobs::vault::random_bytes::<3>().iter().map(|b| format!("{b:02x}")).collect();
    format!("{host}-{}-{suffix}", std::process::id())
}

/// This machine's name, as worker names and the dashboard show it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}

/// Runs the queues and the cron producers until `shutdown` is cancelled, then gives running
/// jobs [`SHUTDOWN_GRACE`]; jobs claimed but not started go back to their queue.
pub async fn run_workers(mut setup: WorkerSetup, shutdown: CancellationToken) -> std::io::Result<()> {
    let name = setup.context.worker.clone();
    tracing::info!(worker = %name, database = setup.context.store.backend_name(), queues = "connect, refresh, sync, notify, event", "worker started");
    let paused = pauses::Paused::start(setup.context.store.clone(), setup.config.poll_interval, shutdown.clone()).await;
    setup.context.paused = {
        let paused = paused.clone();
        jobs::pauses::Probe::new(move || paused.all())
    };
    let cron = tokio::spawn(cron::run(setup.context.clone(), setup.config.cron.clone(), paused.clone(), shutdown.clone()));
    let keepalive = tokio::spawn(queues::keep_alive(setup.clone(), shutdown.clone()));
    let result = queues::run(&setup, paused, shutdown.clone()).await;
    shutdown.cancel();
    let _ = cron.await;
    let _ = keepalive.await;
    if let Err(e) = result {
        tracing::error!(worker = %name, error = %e, "a queue worker failed");
        return Err(std::io::Error::other(e));
    }
    tracing::info!(worker = %name, "worker stopped");
    Ok(())
}
