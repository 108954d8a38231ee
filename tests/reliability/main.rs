//! Faults and abuse, each scenario a test on PostgreSQL against real `socialsync` processes and
//! the sandbox platform. Each prints one `RELIABILITY |` line with its figures;
//! `scripts/reliability` runs them and writes RELIABILITY.md from those lines. One module per
//! kind of fault: [`processes`] (crashes, a database restart), [`platform`] (an outage, a
//! refresh race, a sync failing half-way), [`cron`], [`abuse`] (hostile input, secret leaks),
//! [`retention`] (the pruner killed mid-pass).
//!
//! Sizes and durations can be raised by hand (the defaults are what CI runs):
//! `RELIABILITY_ACCOUNTS` (crashes, 2000), `RELIABILITY_KILL_EVERY_MS` (3000),
//! `RELIABILITY_DB_DOWN_SECS` (5), `RELIABILITY_OUTAGE_SECS` (8), `RELIABILITY_PRUNE_RUNS` (400000).

#[path = "../support/mod.rs"]
mod support;

mod abuse;
mod cron;
mod platform;
mod processes;
mod retention;

use jobs::store::Pool;
use support::Proc;
use testkit::{TestDb, platform::SandboxServer, scan::find_plaintext};

/// A schedule that never fires during a test (1 January, midnight).
pub const NEVER: &str = "0 0 1 1 *";

pub fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The scenario's figures, one line that `scripts/reliability` collects (with the test's name,
/// which it matches to the test's verdict).
pub fn report(test: &str, scenario: &str, figures: &str) {
    println!("RELIABILITY | {test} | {scenario} | {figures}");
}

pub fn pg(db: &TestDb) -> &sqlx::PgPool {
    let Pool::Postgres(p) = db.store.pool() else { unreachable!("reliability tests run on PostgreSQL") };
    p
}

pub async fn count(db: &TestDb, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(pg(db)).await.unwrap()
}

/// Sync jobs not yet at their end (a job a dead worker held must be run again and end).
pub const SYNC_LEFT: &str = "SELECT COUNT(*) FROM apalis.jobs WHERE job_type = 'sync' AND status <> 'Done'";

/// Accounts still active that have not been synced, or not refreshed when `refreshed` is asked.
pub async fn unfinished(db: &TestDb, refreshed: bool) -> i64 {
    let also = if refreshed { " OR last_refreshed_at IS NULL" } else { "" };
    count(db, &format!("SELECT COUNT(*) FROM social_accounts WHERE status = 'active' AND (last_synced_at IS NULL{also})")).await
}

/// Every code, token and client secret the sandbox issued.
pub async fn issued_secrets(sb: &SandboxServer) -> Vec<String> {
    let s = sb.admin_get("secrets").await;
    ["codes", "tokens", "client_secrets"]
        .iter()
        .flat_map(|k| s[k].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect::<Vec<_>>())
        .collect()
}

/// Scans process logs, every table (the queue's job payloads too) and collected responses for
/// `secrets`; returns how many were scanned for, and panics naming where any was found.
pub async fn assert_no_plaintext(db: &TestDb, secrets: &[String], texts: &[(String, String)]) -> usize {
    assert!(!secrets.is_empty());
    let mut found: Vec<String> = find_plaintext(&db.store, secrets).await.into_iter().map(|(table, _)| format!("table {table}")).collect();
    for (what, text) in texts {
        if secrets.iter().any(|s| text.contains(s.as_str())) {
            found.push(what.clone());
        }
    }
    assert!(found.is_empty(), "a secret in plaintext in: {found:?}");
    secrets.len()
}

pub fn logs(procs: &[&Proc], name: &str) -> Vec<(String, String)> {
    procs.iter().enumerate().map(|(i, p)| (format!("{name} {i} log"), p.output())).collect()
}

/// `bytes` random bytes as hex: a fresh secret.
pub fn hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", jobs::vault::random_bytes::<1>()[0])).collect()
}
