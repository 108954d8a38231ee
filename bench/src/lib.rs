//! socialsync's benchmarks. Timings on a shared 2-core machine are noisy, so every figure is
//! printed beside a baseline measured in the same run, on the same database, and as a ratio
//! to it. Run by hand (`cargo run --release -p bench -- all`); `BENCHMARKS.md` holds the
//! results. A tiny size runs in the test suite so the program does not rot.
//!
//! - [`fanout`]: the nightly sync sweep enqueueing N jobs; baseline one `INSERT … SELECT` of N rows.
//! - [`pickup`]: enqueue → handler start with idle workers; baselines a LISTEN/NOTIFY round trip,
//!   and one sent by a durable insert's commit.
//! - [`dashboard`]: page times with N jobs in the queue table; baseline `SELECT count(*)`.
//! - [`memory`]: an idle worker's resident memory; baseline the same binary serving the sandbox.
//! - [`throughput`]: N no-op jobs enqueued and processed at concurrency C; baselines bare
//!   apalis-postgres, default and with claim batch 100.
//! - [`graphile`]: socialsync's no-op throughput beside graphile-worker 0.18 tuned, interleaved.
//! - [`history`]: a month of history for N accounts by SQL, one pruner pass: rows and bytes per
//!   table, and claim, enqueue and dashboard latencies at day 30 against day 1.
//! - [`orphans`]: SIGKILL a worker running N syncs, until all run elsewhere; baseline starting N fresh.
//! - [`pacing`]: 3 workers × 16 syncing against the sandbox at 50 ms spacing; baseline the bound.
//! - [`api`]: requests per second and latency of the status read and sync request under `wrk`;
//!   baseline `GET /healthz` on the same process.

use std::time::{Duration, Instant};

use jobs::Store;
use sqlx::PgPool;
use testkit::{Backend, TestDb};

pub mod api;
pub mod dashboard;
pub mod fanout;
pub mod graphile;
pub mod history;
pub mod memory;
pub mod orphans;
pub mod pacing;
pub mod throughput;
pub mod pickup;

/// One measured figure and the baseline it is read against, in one unit.
#[derive(Clone, Debug)]
pub struct Figure {
    pub name: String,
    pub value: f64,
    pub baseline_name: String,
    pub baseline: f64,
    pub unit: &'static str,
    /// The project's goal for this figure, in words.
    pub target: String,
}

impl Figure {
    /// A duration, in milliseconds.
    pub fn time(name: String, value: Duration, baseline_name: &str, baseline: Duration, target: &str) -> Figure {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        Figure { name, value: ms(value), baseline_name: baseline_name.into(), baseline: ms(baseline), unit: "ms", target: target.into() }
    }

    pub fn ratio(&self) -> f64 {
        self.value / self.baseline.max(1e-9)
    }

    /// A row of the table in BENCHMARKS.md.
    pub fn row(&self) -> String {
        let u = self.unit;
        // A baseline not run (NaN) has no ratio.
        let ratio = if self.baseline.is_nan() { "–".to_owned() } else { format!("×{:.2}", self.ratio()) };
        let (value, baseline) = (number(self.value), number(self.baseline));
        format!("| {} | {value} {u} | {baseline} {u} ({}) | {ratio} | {} |", self.name, self.baseline_name, self.target)
    }
}

/// One decimal, or three significant digits below 1 (a pace of 0.495 starts/s is not 0.5).
fn number(v: f64) -> String {
    let decimals = if v.is_finite() && v != 0.0 && v.abs() < 1.0 { (2 - v.abs().log10().floor() as i32).max(1) as usize } else { 1 };
    format!("{v:.decimals$}")
}

/// The header of the table [`Figure::row`] fills.
pub const HEADER: &str = "| figure | measured | baseline (same run) | ratio | target |\n|---|---|---|---|---|";

/// A fresh, migrated PostgreSQL database (dropped at the end), with a raw pool beside the store.
pub async fn database() -> (TestDb, Store, PgPool) {
    let db = TestDb::new(Backend::Postgres).await;
    let store = db.store.clone();
    let pool = PgPool::connect(&db.url).await.expect("the benchmark database accepts connections");
    (db, store, pool)
}

/// What the benchmarks' connections to PostgreSQL are, in words ([`jobs::store::describe_postgres`]):
/// the figures depend on the transport (TLS on a loopback connection cost the no-op throughput
/// about 15 %: BENCHMARKS.md, "Findings"). `TEST_DATABASE_URL` chooses it: `?sslmode=disable`,
/// or a Unix socket with `?host=/var/run/postgresql`.
pub async fn connection() -> String {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&testkit::postgres_admin_url()).await.expect("the PostgreSQL server accepts connections");
    let how = jobs::store::describe_postgres(&mut conn).await.expect("the connection describes itself");
    let _ = conn.close().await;
    how
}

/// The median of `runs` timings of `f`.
pub async fn median<F, Fut>(runs: usize, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        f().await;
        times.push(t.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

/// The `p`-th percentile (0–100) of `samples`, which it sorts.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p / 100.0).round() as usize;
    samples[i.min(samples.len().saturating_sub(1))]
}

#[cfg(test)]
mod tests {
    use super::Figure;

    #[test]
    fn a_row_keeps_three_significant_digits_below_one() {
        let f = Figure { name: "pace".into(), value: 0.4951, baseline: 0.5, baseline_name: "bound".into(), unit: "starts/s", target: String::new() };
        assert_eq!(f.row(), "| pace | 0.495 starts/s | 0.500 starts/s (bound) | ×0.99 |  |");
        let f = Figure { value: 14.28, baseline: 20.0, ..f };
        assert!(f.row().starts_with("| pace | 14.3 starts/s | 20.0 starts/s"), "{}", f.row());
    }
}
