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
}

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
    pub async fn queue_overview(&self) -> Result<BTreeMap<String, QueueCounts>> {
        let by_status = format!("SELECT status, job_type, COUNT(*) FROM {} GROUP BY 1, 2", self.pool().pick("apalis.jobs", "Jobs"));
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
                oldest_pending: None,
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
