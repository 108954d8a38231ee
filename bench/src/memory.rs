//! Memory: the resident set of an idle `socialsync worker` process (PostgreSQL, every queue,
//! production settings), read from `/proc` once it has reported its first heartbeat and
//! settled. Baseline: the same binary running only the sandbox (`socialsync sandbox`): the
//! floor of the runtime, TLS and HTTP stacks without pools, queues or cron.
//!
//! Under load: the same worker process draining a queue of no-op jobs (syncs of accounts that
//! do not exist) at sync concurrency 64, its resident set sampled every 50 ms; the peak beside
//! the idle figure.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::Figure;

/// The `socialsync` binary beside this one (`SOCIALSYNC_BIN` overrides).
fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("SOCIALSYNC_BIN") {
        return p.into();
    }
    let mut dir = std::env::current_exe().expect("this program's path");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop(); // a test binary lives in target/*/deps
    }
    dir.join("socialsync")
}

fn rss_kib(child: &Child) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).expect("the process is alive");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/*/status")
}

/// A child process, killed when dropped.
pub(crate) struct Killed(pub(crate) Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `socialsync` binary with `args` and `env`, its output discarded (warnings only).
pub(crate) fn spawn(args: &[&str], env: &[(&str, &str)]) -> Killed {
    let mut cmd = Command::new(binary());
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null()).env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Killed(cmd.spawn().unwrap_or_else(|e| panic!("{} runs (build the socialsync binary first): {e}", binary().display())))
}

/// Settling time after start-up, so lazily grown buffers are counted.
const SETTLE: Duration = Duration::from_secs(3);

/// A `socialsync worker` on `db`, once it has reported its first heartbeat.
async fn worker(db: &testkit::TestDb, store: &jobs::Store, extra: &[(&str, &str)]) -> Killed {
    let key = jobs::VaultKey::generate();
    let mut env = vec![("DATABASE_URL", db.url.as_str()), ("ENCRYPTION_KEY", key.expose().as_str()), ("SANDBOX", "true"), ("METRICS_ADDR", "127.0.0.1:0")];
    env.extend_from_slice(extra);
    let worker = spawn(&["worker"], &env);
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.worker_processes(jobs::Timestamp::now()).await.expect("readable").is_empty() {
        assert!(Instant::now() < deadline, "the worker never reported a heartbeat");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker
}

/// Idle RSS, then the peak RSS while draining `n` no-op jobs (with the rate it drained them).
pub async fn run(n: usize) -> Vec<Figure> {
    let (db, store, pool) = crate::database().await;
    let idle = worker(&db, &store, &[]).await;
    tokio::time::sleep(SETTLE).await;
    let worker_kib = rss_kib(&idle.0);
    drop(idle);

    let jobs: Vec<_> = (0..n).map(|i| jobs::sync::job(jobs::AccountId(10_000_000 + i as i64), jobs::sync::SyncReason::Manual, jobs::Timestamp::now())).collect();
    for chunk in jobs.chunks(1000) {
        store.enqueue_many(chunk).await.expect("enqueued");
    }
    let since = crate::throughput::database_micros(&pool).await;
    let busy = worker(&db, &store, &[("SYNC_CONCURRENCY", "64")]).await;
    let mut peak_kib = 0;
    let drained = crate::throughput::until_done(&pool, jobs::sync::KIND, n, since);
    tokio::pin!(drained);
    let mut sample = tokio::time::interval(Duration::from_millis(50));
    // The worker's start-up is in the time: it claims jobs as soon as it runs.
    let took = loop {
        tokio::select! {
            took = &mut drained => break took,
            _ = sample.tick() => peak_kib = peak_kib.max(rss_kib(&busy.0)),
        }
    };
    drop(busy);

    let sandbox = spawn(&["sandbox", "--port", "0"], &[]);
    tokio::time::sleep(SETTLE).await;
    let sandbox_kib = rss_kib(&sandbox.0);
    drop(sandbox);
    drop(db);
    vec![
        Figure {
            name: "idle worker process, resident memory".into(),
            value: worker_kib as f64 / 1024.0,
            baseline_name: "the same binary serving only the sandbox".into(),
            baseline: sandbox_kib as f64 / 1024.0,
            unit: "MiB",
            target: "< 50 MB".into(),
        },
        Figure {
            name: format!("worker process draining {n} no-op jobs at concurrency 64 ({:.0} jobs/s), peak resident memory", n as f64 / took.as_secs_f64()),
            value: peak_kib as f64 / 1024.0,
            baseline_name: "the same process idle".into(),
            baseline: worker_kib as f64 / 1024.0,
            unit: "MiB",
            target: String::new(),
        },
    ]
}
