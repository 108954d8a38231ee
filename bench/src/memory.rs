//! Memory: the resident set of an idle `socialsync worker` process (PostgreSQL, every queue,
//! production settings), read from `/proc` once it has reported its first heartbeat and
//! settled. Baseline: the same binary running only the sandbox (`socialsync sandbox`): the
//! floor of the runtime, TLS and HTTP stacks without pools, queues or cron.

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

pub async fn run() -> Figure {
    let (db, store, _pool) = crate::database().await;
    let key = jobs::VaultKey::generate();
    let worker = spawn(&["worker"], &[("DATABASE_URL", db.url.as_str()), ("ENCRYPTION_KEY", key.expose().as_str()), ("METRICS_ADDR", "127.0.0.1:0")]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.worker_processes(jobs::Timestamp::now()).await.expect("readable").is_empty() {
        assert!(Instant::now() < deadline, "the worker never reported a heartbeat");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(SETTLE).await;
    let worker_kib = rss_kib(&worker.0);
    drop(worker);

    let sandbox = spawn(&["sandbox", "--port", "0"], &[]);
    tokio::time::sleep(SETTLE).await;
    let sandbox_kib = rss_kib(&sandbox.0);
    drop(sandbox);
    drop(db);
    Figure {
        name: "idle worker process, resident memory".into(),
        value: worker_kib as f64 / 1024.0,
        baseline_name: "the same binary serving only the sandbox".into(),
        baseline: sandbox_kib as f64 / 1024.0,
        unit: "MiB",
        target: "< 50 MB".into(),
    }
}
