//! `rate_limit_counters`: counters shared by every API process, one row per key and fixed
//! window. The policy (window length, limit, how windows combine) lives with the API; the store
//! counts atomically and reads a window with the one before it, in one round trip on PostgreSQL.
//!
//! A hit commits without waiting for the WAL flush (`synchronous_commit` off for its own
//! transaction): counters live minutes, and a database crash that loses the last fraction of a
//! second of them only forgives those requests. Every API request waits for one flush fewer.

use std::collections::{HashMap, HashSet};

use super::{Result, Store};
use crate::time::Timestamp;

/// One request's hit on `key` in the window starting at `window_start` (purgeable after
/// `expires_at`), reading the window before it and another key's two windows.
#[derive(Clone, Debug)]
pub struct RateHit {
    pub key: String,
    pub window_start: Timestamp,
    pub previous_start: Timestamp,
    pub expires_at: Timestamp,
    pub read: String,
    /// (current, previous) windows of `read`.
    pub read_windows: (Timestamp, Timestamp),
}

impl Store {
    /// Adds one hit to `key` in the window starting at `window_start`; returns the count after
    /// it and the count of the window starting at `previous_start`. The row may be purged after
    /// `expires_at`.
    pub async fn hit_rate_limit(&self, key: &str, window_start: Timestamp, previous_start: Timestamp, expires_at: Timestamp) -> Result<(i64, i64)> {
        const HIT: &str = "
            INSERT INTO rate_limit_counters (key, window_start, count, expires_at) VALUES ($1, $2, 1, $3)
            ON CONFLICT (key, window_start) DO UPDATE SET count = rate_limit_counters.count + 1
            RETURNING count";
        match self.pool() {
            super::Pool::Postgres(p) => {
                const BOTH: &str = "
                    WITH hit AS (
                        INSERT INTO rate_limit_counters (key, window_start, count, expires_at) VALUES ($1, $2, 1, $3)
                        ON CONFLICT (key, window_start) DO UPDATE SET count = rate_limit_counters.count + 1
                        RETURNING count)
                    SELECT (SELECT count FROM hit),
                        COALESCE((SELECT count FROM rate_limit_counters WHERE key = $1 AND window_start = $4), 0)
                    FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit";
                Ok(sqlx::query_as(BOTH).bind(key).bind(window_start).bind(expires_at).bind(previous_start).fetch_one(p).await?)
            }
            // SQLite has no writing CTE; it is in-process, so two statements cost little.
            super::Pool::Sqlite(p) => {
                let current: i64 = sqlx::query_scalar(HIT).bind(key).bind(window_start).bind(expires_at).fetch_one(p).await?;
                let (_, previous) = self.rate_limit_counts(key, window_start, previous_start).await?;
                Ok((current, previous))
            }
        }
    }

    /// [`Store::hit_rate_limit`] on each hit's `key`, and in the same statement
    /// [`Store::rate_limit_counts`] of another key, `read`, in its windows `read_windows`
    /// (current, previous): what the API's guard needs for every request. Several requests
    /// share one statement (the API groups concurrent requests this way), answered in order:
    /// hits on the same key and window count one after another, as if they had come one by one.
    pub async fn hit_rate_limits_reading(&self, hits: &[RateHit]) -> Result<Vec<((i64, i64), (i64, i64))>> {
        let p = match self.pool() {
            super::Pool::Postgres(p) => p,
            super::Pool::Sqlite(_) => {
                let mut answers = Vec::with_capacity(hits.len());
                for h in hits {
                    let hit = self.hit_rate_limit(&h.key, h.window_start, h.previous_start, h.expires_at).await?;
                    answers.push((hit, self.rate_limit_counts(&h.read, h.read_windows.0, h.read_windows.1).await?));
                }
                return Ok(answers);
            }
        };
        // One row per key and window (a statement may not update a row twice), with its hits.
        let mut rows: HashMap<(&str, i64), (i64, Timestamp)> = HashMap::new();
        let mut reads: HashSet<(&str, i64)> = HashSet::new();
        for h in hits {
            let row = rows.entry((&h.key, h.window_start.millis())).or_insert((0, h.expires_at));
            *row = (row.0 + 1, row.1.max(h.expires_at));
            reads.extend([(h.key.as_str(), h.previous_start.millis()), (&h.read, h.read_windows.0.millis()), (&h.read, h.read_windows.1.millis())]);
        }
        // Planned anew each time, as `finish_job_runs`: a kept plan from while the table was
        // small read every later group's counters with a scan of the whole table.
        const SQL: &str = "
            WITH hit AS (
                INSERT INTO rate_limit_counters (key, window_start, count, expires_at)
                SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[])
                ON CONFLICT (key, window_start) DO UPDATE SET count = rate_limit_counters.count + EXCLUDED.count
                RETURNING key, window_start, count)
            SELECT key, window_start, count, true FROM hit
            UNION ALL
            SELECT c.key, c.window_start, c.count, false
            FROM rate_limit_counters c JOIN UNNEST($5::text[], $6::int8[]) AS r (key, window_start)
                ON c.key = r.key AND c.window_start = r.window_start,
                (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit";
        let (keys, windows): (Vec<&str>, Vec<i64>) = rows.keys().copied().unzip();
        let (counts, expires): (Vec<i64>, Vec<i64>) = rows.values().map(|(n, e)| (*n, e.millis())).unzip();
        let (read_keys, read_windows): (Vec<&str>, Vec<i64>) = reads.iter().copied().unzip();
        let found: Vec<(String, i64, i64, bool)> = sqlx::query_as(SQL)
            .persistent(false)
            .bind(keys).bind(windows).bind(counts).bind(expires).bind(read_keys).bind(read_windows)
            .fetch_all(p)
            .await?;
        let (mut after, mut before) = (HashMap::new(), HashMap::new());
        for (key, window, count, hit) in found {
            if hit { &mut after } else { &mut before }.insert((key, window), count);
        }
        let read = |key: &str, window: Timestamp| before.get(&(key.to_owned(), window.millis())).copied().unwrap_or(0);
        let mut counted: HashMap<(&str, i64), i64> = HashMap::new();
        let mut answers = Vec::with_capacity(hits.len());
        for h in hits {
            let row = (h.key.as_str(), h.window_start.millis());
            let nth = counted.entry(row).or_default();
            *nth += 1;
            let last = after.get(&(h.key.clone(), row.1)).copied().ok_or_else(|| super::StoreError::Corrupt(format!("no count for {}", h.key)))?;
            let current = last - rows[&row].0 + *nth;
            answers.push(((current, read(&h.key, h.previous_start)), (read(&h.read, h.read_windows.0), read(&h.read, h.read_windows.1))));
        }
        Ok(answers)
    }

    /// The counts of `key` in the window starting at `window_start` and in the one starting at
    /// `previous_start`, without adding to them.
    pub async fn rate_limit_counts(&self, key: &str, window_start: Timestamp, previous_start: Timestamp) -> Result<(i64, i64)> {
        const SQL: &str = "
            SELECT COALESCE(MAX(CASE WHEN window_start = $2 THEN count END), 0),
                COALESCE(MAX(CASE WHEN window_start = $3 THEN count END), 0)
            FROM rate_limit_counters WHERE key = $1 AND window_start IN ($2, $3)";
        let (current, previous): (i64, i64) = on_pool!(self, p => sqlx::query_as(SQL)
            .bind(key).bind(window_start).bind(previous_start).fetch_one(p).await?);
        Ok((current, previous))
    }

    /// Deletes counters whose windows ended before `now`; returns how many.
    pub async fn purge_rate_limits(&self, now: Timestamp) -> Result<u64> {
        const SQL: &str = "DELETE FROM rate_limit_counters WHERE expires_at < $1";
        Ok(on_pool!(self, p => sqlx::query(SQL).bind(now).execute(p).await?.rows_affected()))
    }
}
