//! Several `socialsync worker` processes on one PostgreSQL, against a sandbox platform, with
//! accounts connected the way the connect job would store them.

use std::time::Duration;

use jobs::{AccountId, Vault, VaultKey, store::Pool};
use testkit::{TestDb, platform::SandboxServer};

use super::Proc;

pub use testkit::platform::connected_accounts_with;

/// `n` connected TikTok accounts with 5 videos each; see [`connected_accounts_with`].
pub async fn connected_accounts(db: &TestDb, sb: &SandboxServer, vault: &Vault, n: usize) -> Vec<(AccountId, String)> {
    connected_accounts_with(&db.store, sb, vault, n, 5).await
}

/// Each test here runs several worker processes and a PostgreSQL load on a 2-core machine;
/// they take turns, so one test's processes do not starve another's timing (the pacing tests
/// read real arrival times at the platform).
static TAKE_TURNS: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    TAKE_TURNS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The settings worker processes share, and the vault that sealed the accounts' tokens.
pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
    pub vault: Vault,
}

impl Fleet {
    /// Fast retries, quick orphan detection, a 20 ms TikTok pace; `extra` overrides.
    pub fn new(db_url: &str, sb: &SandboxServer, extra: &[(&str, &str)]) -> Fleet {
        let key = VaultKey::generate();
        let vault = Vault::new(VaultKey::parse(key.expose()).unwrap(), vec![]);
        let mut env: Vec<(String, String)> = [
            ("DATABASE_URL", db_url),
            ("ENCRYPTION_KEY", key.expose().as_str()),
            ("SANDBOX", "true"),
            ("SANDBOX_URL", sb.url.as_str()),
            ("WORKER_POLL_MS", "100"),
            ("ORPHAN_AFTER_SECS", "2"),
            ("RETRY_BASE_SECS", "1"),
            ("PACING_TIKTOK_MS", "20"),
            ("DATABASE_MAX_CONNECTIONS", "20"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            env.retain(|(name, _)| name != k);
            env.push((k.to_string(), v.to_string()));
        }
        Fleet { dir: tempfile::tempdir().unwrap(), env, vault }
    }

    pub fn env(&self) -> Vec<(&str, &str)> {
        self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    /// A worker process, once it says it started.
    pub fn worker(&self) -> Proc {
        let mut p = Proc::spawn(self.dir.path(), &["worker", "--no-migrate"], &self.env());
        p.wait_for_line(Duration::from_secs(60), |l| l.contains("worker started"));
        p
    }

    /// An API process, and its `http://` address.
    pub fn api(&self, extra: &[(&str, &str)]) -> (Proc, String) {
        let mut env = self.env();
        env.extend_from_slice(extra);
        let mut p = Proc::spawn(self.dir.path(), &["api", "--no-migrate"], &env);
        let url = p.wait_for_url();
        (p, url)
    }
}

/// How many of `queue`'s jobs `pid` is running now, from the run log.
pub async fn running_on(db: &TestDb, queue: &str, pid: u32) -> i64 {
    let Pool::Postgres(p) = db.store.pool() else { unreachable!() };
    sqlx::query_scalar("SELECT COUNT(*) FROM job_runs WHERE queue = $1 AND finished_at IS NULL AND worker LIKE '%-' || $2 || '-%'")
        .bind(queue)
        .bind(pid.to_string())
        .fetch_one(p)
        .await
        .unwrap()
}

/// Prints the unfinished jobs and the workers' warnings: what a timed-out wait needs to explain.
pub async fn explain_stall(db: &TestDb, workers: &[Proc]) {
    let Pool::Postgres(p) = db.store.pool() else { unreachable!() };
    let rows: Vec<(String, String, String, i32, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT id, job_type, status, attempts, lock_by, last_result::text FROM apalis.jobs WHERE status <> 'Done' ORDER BY job_type LIMIT 50",
    )
    .fetch_all(p)
    .await
    .unwrap();
    for r in rows {
        println!("job {r:?}");
    }
    for w in workers {
        for l in w.output().lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).take(20) {
            println!("{l}");
        }
    }
}
