//! The figures of the dashboard's overview: jobs per queue and state, the oldest waiting job,
//! and finished attempts per minute. Each is one query, however many queues there are.

use std::collections::BTreeMap;

use super::{JobOutcome, Result, Store, job_search::JobState};
use crate::time::Timestamp;

/// Jobs per state on one queue, and how long the oldest due job has waited.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueCounts {
    pub counts: BTreeMap<&'static str, i64>,
    /// When the oldest pending (due, unclaimed) job became due.
    pub oldest_pending: Option<Timestamp>,
    /// The states whose count is an estimate (only `done`, on a large table; see
    /// [`Store::queue_overview`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub estimated: Vec<&'static str>,
}

/// Above this many rows (PostgreSQL's own estimate) the `done` counts are estimated.
pub const EXACT_COUNTS_BELOW: f64 = 200_000.0;

/// Finished attempts in one minute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MinuteCounts {
    /// The minute's start.
    pub minute: Timestamp,
    pub succeeded: i64,
    /// Failed attempts (retrying or dead).
    pub failed: i64,
}

impl Store {
    /// Jobs per queue and state (every state present, zero where none).
    ///
    /// Two queries, run side by side: counts per status and queue (a scan); and the split of
    /// the few waiting and failed rows by due time and attempts, read from the
    /// `(status, job_type, id) INCLUDE (run_at, attempts, max_attempts)` index alone. (One
    /// grouped scan computing the split for every row took twice as long at a million jobs.)
    ///
    /// Done jobs are nearly all of a big table (a week of them by default), so past
    /// [`EXACT_COUNTS_BELOW`] rows on PostgreSQL the scan is skipped: every other state is
    /// still counted exactly from the index, and `done` is estimated from the planner's
    /// statistics (rows in the table × the queue's share, less the queue's other jobs), marked
    /// in [`QueueCounts::estimated`]. The estimate is as fresh as the last (auto)ANALYZE.
    pub async fn queue_overview(&self) -> Result<BTreeMap<String, QueueCounts>> {
        self.queue_overview_exact_below(EXACT_COUNTS_BELOW).await
    }

    /// [`Store::queue_overview`] with another threshold (tests use 0).
    pub async fn queue_overview_exact_below(&self, exact_below: f64) -> Result<BTreeMap<String, QueueCounts>> {
        let shares = match self.pool() {
            super::Pool::Postgres(p) => queue_shares(p, exact_below).await?,
            super::Pool::Sqlite(_) => None,
        };
        let by_status = match &shares {
            None => format!("SELECT status, job_type, COUNT(*) FROM {} GROUP BY 1, 2", self.pool().pick("apalis.jobs", "Jobs")),
            Some(_) => "SELECT status, job_type, COUNT(*) FROM apalis.jobs WHERE status IN ('Queued', 'Running', 'Killed') GROUP BY 1, 2".into(),
        };
        let split = self.pool().pick(
            "SELECT job_type, status, run_at > now(), attempts >= max_attempts, COUNT(*),
                (extract(epoch FROM MIN(run_at)) * 1000)::bigint
             FROM apalis.jobs WHERE status IN ('Pending', 'Failed') GROUP BY 1, 2, 3, 4",
            "SELECT job_type, status, run_at > strftime('%s', 'now'), attempts >= max_attempts, COUNT(*), MIN(run_at) * 1000
             FROM Jobs WHERE status IN ('Pending', 'Failed') GROUP BY 1, 2, 3, 4",
        );
        let (totals, waiting): (Vec<(String, String, i64)>, Vec<(String, String, bool, bool, i64, Option<i64>)>) = on_pool!(self, p => {
            tokio::try_join!(
                sqlx::query_as(sqlx::AssertSqlSafe(by_status)).fetch_all(p),
                sqlx::query_as(split).fetch_all(p),
            )?
        });
        let mut out: BTreeMap<String, QueueCounts> = BTreeMap::new();
        fn queue(out: &mut BTreeMap<String, QueueCounts>, name: String) -> &mut QueueCounts {
            out.entry(name).or_insert_with(|| QueueCounts {
                counts: JobState::ALL.iter().map(|s| (s.as_str(), 0)).collect(),
                ..QueueCounts::default()
            })
        }
        for (status, name, n) in totals.into_iter().filter(|(s, _, _)| s != "Pending" && s != "Failed") {
            *queue(&mut out, name).counts.entry(JobState::of(&status, false, false).as_str()).or_default() += n;
        }
        for (name, status, later, exhausted, n, min_run_at) in waiting {
            let q = queue(&mut out, name);
            let state = JobState::of(&status, later, exhausted);
            *q.counts.entry(state.as_str()).or_default() += n;
            if state == JobState::Pending {
                let t = min_run_at.map(Timestamp);
                q.oldest_pending = match (q.oldest_pending, t) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        if let Some(shares) = shares {
            // A queue too rare for the statistics' common values gets ≈ 0.
            let rows: BTreeMap<String, f64> = shares.into_iter().collect();
            for name in rows.keys() {
                queue(&mut out, name.clone());
            }
            for (name, q) in &mut out {
                let others: i64 = q.counts.values().sum();
                let done = rows.get(name).map_or(0, |r| (r.round() as i64 - others).max(0));
                q.counts.insert(JobState::Done.as_str(), done);
                q.estimated.push(JobState::Done.as_str());
            }
        }
        Ok(out)
    }

    /// Finished attempts per minute since `since` (minutes with none are absent).
    pub async fn attempts_per_minute(&self, since: Timestamp) -> Result<Vec<MinuteCounts>> {
        const SQL: &str = "
            SELECT (finished_at / 60000) * 60000 AS minute, outcome, COUNT(*) FROM job_runs
            WHERE finished_at >= $1 AND outcome IN ('succeeded', 'retrying', 'dead')
            GROUP BY 1, 2 ORDER BY 1";
        let rows: Vec<(i64, JobOutcome, i64)> = on_pool!(self, p => sqlx::query_as(SQL).bind(since).fetch_all(p).await?);
        let mut out: Vec<MinuteCounts> = vec![];
        for (minute, outcome, n) in rows {
            if out.last().is_none_or(|m| m.minute.0 != minute) {
                out.push(MinuteCounts { minute: Timestamp(minute), ..MinuteCounts::default() });
            }
            let m = out.last_mut().expect("pushed above");
            match outcome {
                JobOutcome::Succeeded => m.succeeded += n,
                _ => m.failed += n,
            }
        }
        Ok(out)
    }
}

/// Rows per queue as PostgreSQL's statistics put them, if the table is at least `exact_below`
/// rows and has been analysed; `None` means "count exactly".
async fn queue_shares(pool: &sqlx::PgPool, exact_below: f64) -> Result<Option<Vec<(String, f64)>>> {
    const SQL: &str = "
        SELECT c.reltuples::float8, s.most_common_vals::text::text[], s.most_common_freqs::float8[]
        FROM pg_class c
        LEFT JOIN pg_stats s ON s.schemaname = 'apalis' AND s.tablename = 'jobs' AND s.attname = 'job_type'
        WHERE c.oid = 'apalis.jobs'::regclass";
    let (rows, queues, shares): (f64, Option<Vec<String>>, Option<Vec<f64>>) = sqlx::query_as(SQL).fetch_one(pool).await?;
    // reltuples is -1 before the first ANALYZE; no statistics, no estimate.
    Ok(match (queues, shares) {
        (Some(queues), Some(shares)) if rows >= exact_below && rows > 0.0 => Some(queues.into_iter().zip(shares.into_iter().map(|f| f * rows)).collect()),
        _ => None,
    })
}
