//! socialsync's benchmarks. Timings on a shared 2-core machine are noisy, so every figure is
//! printed beside a baseline measured in the same run, on the same database, and as a ratio
//! to it. Run by hand (`cargo run --release -p bench -- all`); `BENCHMARKS.md` holds the
//! results. A tiny size runs in the test suite so the program does not rot.
//!
//! - [`fanout`]: the nightly sync sweep enqueueing N jobs; baseline one `INSERT … SELECT` of N rows.
//! - [`pickup`]: enqueue → handler start with idle workers; baseline a LISTEN/NOTIFY round trip.
//! - [`dashboard`]: page times with N jobs in the queue table; baseline `SELECT count(*)`.

use std::time::{Duration, Instant};

use jobs::Store;
use sqlx::PgPool;
use testkit::{Backend, TestDb};

pub mod dashboard;
pub mod fanout;
pub mod pickup;

/// One measured figure and the baseline it is read against.
#[derive(Clone, Debug)]
pub struct Figure {
    pub name: String,
    pub value: Duration,
    pub baseline_name: String,
    pub baseline: Duration,
    /// The project's goal for this figure, in words.
    pub target: String,
}

impl Figure {
    pub fn ratio(&self) -> f64 {
        self.value.as_secs_f64() / self.baseline.as_secs_f64().max(1e-9)
    }

    /// A row of the table in BENCHMARKS.md.
    pub fn row(&self) -> String {
        format!(
            "| {} | {} | {} ({}) | ×{:.2} | {} |",
            self.name,
            ms(self.value),
            ms(self.baseline),
            self.baseline_name,
            self.ratio(),
            self.target
        )
    }
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
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
