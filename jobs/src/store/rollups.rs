//! Roll-ups: the Health page's and the overview's long figures, kept after the raw rows they
//! are computed from are pruned.
//!
//! Finished attempts are rolled up per hour and queue into `job_run_hours` by the pruner,
//! whole hours at a time, in the transaction that moves the `job_runs_rolled_up` mark; every
//! read takes the roll-up below the mark and the raw `job_runs` rows at or above it, so a
//! figure is the same before and after its rows are rolled up and pruned. A nightly sync
//! firing's figures are fixed in `nightly_sync_rollups` once its day is over. Accounts that become inactive are counted by a trigger as it happens
//! (`ops_counters`, [`INACTIVE_COUNTER`]).

use super::{Result, Store, prune::first_id_at};
use crate::time::Timestamp;

/// The `retention_marks` name of the hour up to which `job_runs` are rolled up.
pub const ROLLED_UP: &str = "job_runs_rolled_up";

/// The `ops_counters` name of accounts that left `active` (counted by a trigger).
pub const INACTIVE_COUNTER: &str = "accounts_inactive";

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;
const DAY: std::time::Duration = std::time::Duration::from_secs(86_400);

/// One attempt's contribution to each roll-up column, as SQL over `job_runs` (named s, r, d, l).
macro_rules! counts {
    () => {
        "CASE WHEN outcome = 'succeeded' THEN 1 ELSE 0 END AS s, CASE WHEN outcome = 'retrying' THEN 1 ELSE 0 END AS r,
         CASE WHEN outcome = 'dead' THEN 1 ELSE 0 END AS d, CASE WHEN error_class = 'rate_limited' THEN 1 ELSE 0 END AS l"
    };
}

/// The nightly firings since `$2` of schedule `$1`: those rolled up with their figures, then
/// the others (`live` = 1) with none but what tells their jobs (`finished_at`, `detail`), in one
/// statement so that a roll-up committed meanwhile shows a firing once.
const FIRINGS: &str = "SELECT fire_at, claimed_at, jobs_enqueued, instagram_syncs, tiktok_syncs, last_finished, 0 AS live, NULL AS finished_at, NULL AS detail
     FROM nightly_sync_rollups WHERE schedule = $1 AND fire_at >= $2
     UNION ALL
     SELECT fire_at, claimed_at, jobs_enqueued, 0, 0, NULL, 1, finished_at, detail FROM cron_runs c
     WHERE c.schedule = $1 AND c.fire_at >= $2
       AND NOT EXISTS (SELECT 1 FROM nightly_sync_rollups n WHERE n.schedule = c.schedule AND n.fire_at = c.fire_at)";

/// The figures of the syncs a firing enqueued, from the raw rows: the runs of sync jobs created
/// while it ran (`$1` ≤ id < `$2`, [`JobIds`]), one range of `job_runs_job`
/// whatever the table holds. A sync requested by hand in those seconds counts too; one the
/// firing did not enqueue (deduplicated into a job already waiting, or requested later) does
/// not.
const FIRING_SYNCS: &str = "SELECT COALESCE(CAST(SUM(CASE WHEN r.outcome = 'succeeded' AND a.platform = 'instagram' THEN 1 ELSE 0 END) AS BIGINT), 0),
        COALESCE(CAST(SUM(CASE WHEN r.outcome = 'succeeded' AND a.platform = 'tiktok' THEN 1 ELSE 0 END) AS BIGINT), 0),
        MAX(r.finished_at)
     FROM job_runs r LEFT JOIN social_accounts a ON a.id = r.account_id
     WHERE r.job_id >= $1 AND r.job_id < $2 AND r.queue = 'sync'";

/// The ids of the jobs a firing created lie in `jobs_from..jobs_until`; a sweep keeps this
/// in `cron_runs.detail` as JSON. Job ids are ULIDs, whose first characters are their creation
/// time on the system clock, which `CLOCK_OFFSET_SECS` does not move.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobIds {
    pub jobs_from: String,
    pub jobs_until: String,
}

impl JobIds {
    /// The ids of jobs created from `start` to `end`, both included.
    pub fn between(start: Timestamp, end: Timestamp) -> Self {
        Self { jobs_from: first_id_at(start), jobs_until: first_id_at(end.plus(std::time::Duration::from_millis(1))) }
    }
}

/// One day of one queue's finished attempts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DayOutcomes {
    pub day: Timestamp,
    pub succeeded: i64,
    pub retrying: i64,
    pub dead: i64,
    /// Failed attempts the platform rate-limited.
    pub rate_limited: i64,
}

/// One firing of the nightly sync sweep and how its syncs went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NightlySync {
    pub fire_at: Timestamp,
    /// When the sweep ran (a caught-up firing runs later than it was due).
    pub claimed_at: Timestamp,
    pub jobs_enqueued: Option<i64>,
    /// Syncs the sweep enqueued that succeeded, per platform, and when the last attempt of
    /// one of its syncs ended.
    pub instagram_syncs: i64,
    pub tiktok_syncs: i64,
    pub last_finished: Option<Timestamp>,
}

impl Store {
    /// The roll-up mark, and where the raw rows a read since `since` takes start (the later of
    /// the two). Read before the figures, not in their statement, so the planner sees the
    /// bound and walks `job_runs_finished` from it: as a subquery its value was unknown when
    /// planning, and PostgreSQL read the queue's runs of 30 days through `(queue, started_at)`
    /// (the Health page took 572 ms at day 30 of 100 000 accounts, 271 at day 1). Still exact:
    /// a mark that moves on after this read leaves the rows it passed in `job_runs` (only runs
    /// below the mark and a day old are pruned), read raw once, and their hours above this
    /// mark unread in the roll-up.
    async fn rolled_up(&self, since: Timestamp) -> Result<(Timestamp, Timestamp)> {
        let mark = self.retention_mark(ROLLED_UP).await?.unwrap_or(Timestamp(0));
        Ok((mark, mark.max(since)))
    }

    /// Finished attempts of `queue` per day since `since` (a day's start).
    pub async fn outcomes_per_day(&self, queue: &str, since: Timestamp) -> Result<Vec<DayOutcomes>> {
        const SQL: &str = concat!(
            "SELECT (at / 86400000) * 86400000, CAST(SUM(s) AS BIGINT), CAST(SUM(r) AS BIGINT), CAST(SUM(d) AS BIGINT), CAST(SUM(l) AS BIGINT)
             FROM (
                SELECT hour AS at, succeeded AS s, retrying AS r, dead AS d, rate_limited AS l FROM job_run_hours
                WHERE queue = $1 AND hour >= $2 AND hour < $3
                UNION ALL
                SELECT finished_at, ", counts!(), " FROM job_runs WHERE queue = $1 AND finished_at >= $4
             ) t GROUP BY 1 ORDER BY 1");
        let (mark, raw_from) = self.rolled_up(since).await?;
        let rows: Vec<(i64, i64, i64, i64, i64)> = on_pool!(self, p => sqlx::query_as(SQL).bind(queue).bind(since).bind(mark).bind(raw_from).fetch_all(p).await?);
        Ok(rows
            .into_iter()
            .map(|(day, succeeded, retrying, dead, rate_limited)| DayOutcomes { day: Timestamp(day), succeeded, retrying, dead, rate_limited })
            .collect())
    }

    /// Finished attempts of every queue per day since `since` (a day's start): (day,
    /// succeeded, failed — retrying or dead).
    pub async fn attempts_per_day(&self, since: Timestamp) -> Result<Vec<(Timestamp, i64, i64)>> {
        const SQL: &str = concat!(
            "SELECT (at / 86400000) * 86400000, CAST(SUM(s) AS BIGINT), CAST(SUM(r + d) AS BIGINT) FROM (
                SELECT hour AS at, succeeded AS s, retrying AS r, dead AS d, rate_limited AS l FROM job_run_hours
                WHERE hour >= $1 AND hour < $2
                UNION ALL
                SELECT finished_at, ", counts!(), " FROM job_runs WHERE finished_at >= $3
             ) t GROUP BY 1 ORDER BY 1");
        let (mark, raw_from) = self.rolled_up(since).await?;
        Ok(on_pool!(self, p => sqlx::query_as(SQL).bind(since).bind(mark).bind(raw_from).fetch_all(p).await?))
    }

    /// Platform rate limits met by any queue, per hour since `since`: (hour, count).
    pub async fn platform_429s_per_hour(&self, since: Timestamp) -> Result<Vec<(Timestamp, i64)>> {
        const SQL: &str = concat!(
            "SELECT hour, CAST(SUM(n) AS BIGINT) FROM (
                SELECT hour, rate_limited AS n FROM job_run_hours WHERE rate_limited > 0 AND hour >= $1 AND hour < $2
                UNION ALL
                SELECT (finished_at / 3600000) * 3600000, 1 FROM job_runs WHERE error_class = 'rate_limited' AND finished_at >= $3
             ) t GROUP BY 1 ORDER BY 1");
        let (mark, raw_from) = self.rolled_up(since).await?;
        Ok(on_pool!(self, p => sqlx::query_as(SQL).bind(since).bind(mark).bind(raw_from).fetch_all(p).await?))
    }

    /// The nightly sync sweeps fired since `since`, with the syncs each enqueued: fixed figures
    /// for the firings whose day is over and rolled up, live ones for the rest (one or two).
    pub async fn nightly_syncs(&self, schedule: &str, since: Timestamp) -> Result<Vec<NightlySync>> {
        let mut firings = Vec::new();
        for f in self.firings(schedule, since).await? {
            firings.push(self.live_figures(f).await?);
        }
        firings.sort_by_key(|n| n.fire_at);
        Ok(firings)
    }

    /// [`FIRINGS`]: each firing's figures and, for a live one, the range of its jobs' ids.
    async fn firings(&self, schedule: &str, since: Timestamp) -> Result<Vec<(NightlySync, Option<JobIds>)>> {
        type Row = (Timestamp, Timestamp, Option<i64>, i64, i64, Option<Timestamp>, i32, Option<Timestamp>, Option<String>);
        let rows: Vec<Row> = on_pool!(self, p => sqlx::query_as(FIRINGS).bind(schedule).bind(since).fetch_all(p).await?);
        Ok(rows
            .into_iter()
            .map(|(fire_at, claimed_at, jobs_enqueued, instagram_syncs, tiktok_syncs, last_finished, live, finished_at, detail)| {
                // Firings recorded without the range (a sweep still running, or killed): the
                // jobs created from the claim to the end, or for a day, on the firing's clock.
                let jobs = (live == 1).then(|| {
                    detail.and_then(|d| serde_json::from_str(&d).ok()).unwrap_or_else(|| JobIds::between(claimed_at, finished_at.unwrap_or(claimed_at.plus(DAY))))
                });
                (NightlySync { fire_at, claimed_at, jobs_enqueued, instagram_syncs, tiktok_syncs, last_finished }, jobs)
            })
            .collect())
    }

    /// A firing's figures: as rolled up, or from [`FIRING_SYNCS`] over `jobs`.
    async fn live_figures(&self, (mut n, jobs): (NightlySync, Option<JobIds>)) -> Result<NightlySync> {
        if let Some(jobs) = jobs {
            (n.instagram_syncs, n.tiktok_syncs, n.last_finished) =
                on_pool!(self, p => sqlx::query_as(FIRING_SYNCS).bind(&jobs.jobs_from).bind(&jobs.jobs_until).fetch_one(p).await?);
        }
        Ok(n)
    }

    /// Rolls finished attempts up, whole hours from the mark to `upto` (rounded down to an
    /// hour), a day per transaction, each moving the mark with it; returns the mark. A pass
    /// cut off loses nothing: the mark is where its last commit left it.
    pub async fn roll_up_job_runs(&self, upto: Timestamp) -> Result<Timestamp> {
        const NEXT: &str = "SELECT MIN(finished_at) FROM job_runs WHERE finished_at >= $1";
        const ROLL: &str = concat!(
            "INSERT INTO job_run_hours (hour, queue, succeeded, retrying, dead, rate_limited)
             SELECT (at / 3600000) * 3600000, queue, SUM(s), SUM(r), SUM(d), SUM(l) FROM (
                SELECT finished_at AS at, queue, ", counts!(), " FROM job_runs WHERE finished_at >= $1 AND finished_at < $2
             ) t WHERE true GROUP BY 1, 2
             ON CONFLICT (hour, queue) DO UPDATE SET succeeded = excluded.succeeded, retrying = excluded.retrying,
                dead = excluded.dead, rate_limited = excluded.rate_limited");
        // Never backwards: two overlapping passes each leave the later mark.
        const MARK: &str = "INSERT INTO retention_marks (name, upto) VALUES ($1, $2)
            ON CONFLICT (name) DO UPDATE SET upto = CASE WHEN excluded.upto > retention_marks.upto THEN excluded.upto ELSE retention_marks.upto END";
        let upto = upto.millis() - upto.millis().rem_euclid(HOUR_MS);
        let mut from = self.retention_mark(ROLLED_UP).await?.map_or(0, Timestamp::millis);
        while from < upto {
            // Skip straight to the next hour with a record: history may start long after 1970.
            let next: Option<i64> = on_pool!(self, p => sqlx::query_scalar(NEXT).bind(from).fetch_one(p).await?);
            let start = next.filter(|n| *n < upto).map_or(upto, |n| from.max(n - n.rem_euclid(HOUR_MS)));
            let to = (start + DAY_MS).min(upto);
            write_tx!(self, tx => {
                sqlx::query(ROLL).bind(start).bind(to).execute(&mut *tx).await?;
                sqlx::query(MARK).bind(ROLLED_UP).bind(to).execute(&mut *tx).await?;
                tx.commit().await?;
            });
            from = to;
        }
        Ok(Timestamp(from))
    }

    /// Fixes the figures of `schedule`'s firings claimed before `closed_before`; returns how many.
    pub async fn roll_up_nightly_syncs(&self, schedule: &str, closed_before: Timestamp) -> Result<u64> {
        const SQL: &str = "INSERT INTO nightly_sync_rollups (schedule, fire_at, claimed_at, jobs_enqueued, instagram_syncs, tiktok_syncs, last_finished)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (schedule, fire_at) DO NOTHING";
        let mut n = 0;
        // Not older than the roll-ups are kept: those would be pruned at once.
        for f in self.firings(schedule, closed_before.minus(crate::retention::ROLLUPS_KEPT)).await? {
            if f.1.is_none() || f.0.claimed_at >= closed_before {
                continue;
            }
            let f = self.live_figures(f).await?;
            n += on_pool!(self, p => sqlx::query(SQL)
                .bind(schedule).bind(f.fire_at).bind(f.claimed_at).bind(f.jobs_enqueued).bind(f.instagram_syncs).bind(f.tiktok_syncs).bind(f.last_finished)
                .execute(p).await?.rows_affected());
        }
        Ok(n)
    }

    /// Deletes roll-ups of hours and firings before `before`.
    pub async fn prune_rollups(&self, before: Timestamp) -> Result<u64> {
        let mut n = 0;
        for sql in ["DELETE FROM job_run_hours WHERE hour < $1", "DELETE FROM nightly_sync_rollups WHERE fire_at < $1"] {
            n += on_pool!(self, p => sqlx::query(sql).bind(before).execute(p).await?.rows_affected());
        }
        Ok(n)
    }
}
