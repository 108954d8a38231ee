//! The job runtime: one apalis monitor per process with a worker per queue.
//!
//! No queue exists yet (the queues arrive with the workers issue); the monitor runs empty and
//! the process waits for its shutdown signal, so deployments and their signal handling can be
//! exercised now.

use std::time::Duration;

use apalis::prelude::Monitor;
use jobs::Store;
pub use tokio_util::sync::CancellationToken;

/// How long running jobs get to finish after shutdown is asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Identity and wiring of one worker process.
#[derive(Clone, Debug)]
pub struct WorkerSetup {
    pub store: Store,
    /// Unique per process (see [`process_name`]), so a restarted process never inherits the
    /// jobs its predecessor held: they are rescued as orphans instead.
    pub name: String,
}

/// A name unique to this process: host, pid and a random suffix.
pub fn process_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let suffix: String = jobs::vault::random_bytes::<3>().iter().map(|b| format!("{b:02x}")).collect();
    format!("{host}-{}-{suffix}", std::process::id())
}

/// Runs the queues until `shutdown` is cancelled, then gives running jobs [`SHUTDOWN_GRACE`].
pub async fn run_workers(setup: WorkerSetup, shutdown: CancellationToken) -> std::io::Result<()> {
    tracing::info!(worker = %setup.name, database = setup.store.backend_name(), queues = 0, "worker started");
    let signal = shutdown.clone();
    Monitor::new()
        .shutdown_timeout(SHUTDOWN_GRACE)
        .run_with_signal(async move {
            signal.cancelled().await;
            Ok(())
        })
        .await
        .map_err(std::io::Error::other)?;
    // An empty monitor returns at once; the process still lives until it is told to stop.
    shutdown.cancelled().await;
    tracing::info!(worker = %setup.name, "worker stopped");
    Ok(())
}
