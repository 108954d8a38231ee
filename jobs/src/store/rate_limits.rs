//! `rate_limit_counters`: counters shared by every API process, one row per key and fixed
//! window. The policy (window length, limit, how windows combine) lives with the API; the store
//! counts atomically and reads a window with the one before it, in one round trip on PostgreSQL.
//!
//! A hit commits without waiting for the WAL flush (`synchronous_commit` off for its own
//! transaction): counters live minutes, and a database crash that loses the last fraction of a
//! second of them only forgives those requests. Every API request waits for one flush fewer.

use super::{Result, Store};
use crate::time::Timestamp;

/// The hit on `$1` in window `$2` (purgeable after `$3`), as a CTE `hit(count)`.
macro_rules! hit_cte {
    () => {
        "WITH hit AS (
            INSERT INTO rate_limit_counters (key, window_start, count, expires_at) VALUES ($1, $2, 1, $3)
            ON CONFLICT (key, window_start) DO UPDATE SET count = rate_limit_counters.count + 1
            RETURNING count)"
    };
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
                const BOTH: &str = concat!(hit_cte!(), "
                    SELECT (SELECT count FROM hit),
                        COALESCE((SELECT count FROM rate_limit_counters WHERE key = $1 AND window_start = $4), 0)
                    FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit");
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

    /// [`Store::hit_rate_limit`] on `key`, and in the same round trip
    /// [`Store::rate_limit_counts`] of another key, `read`, in its windows `read_windows`
    /// (current, previous): what the API's guard needs for every request.
    pub async fn hit_rate_limit_reading(
        &self,
        key: &str,
        window_start: Timestamp,
        previous_start: Timestamp,
        expires_at: Timestamp,
        read: &str,
        read_windows: (Timestamp, Timestamp),
    ) -> Result<((i64, i64), (i64, i64))> {
        match self.pool() {
            super::Pool::Postgres(p) => {
                const SQL: &str = concat!(hit_cte!(), "
                    SELECT (SELECT count FROM hit),
                        COALESCE((SELECT count FROM rate_limit_counters WHERE key = $1 AND window_start = $4), 0),
                        COALESCE((SELECT count FROM rate_limit_counters WHERE key = $5 AND window_start = $6), 0),
                        COALESCE((SELECT count FROM rate_limit_counters WHERE key = $5 AND window_start = $7), 0)
                    FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit");
                let (current, previous, read_current, read_previous): (i64, i64, i64, i64) = sqlx::query_as(SQL)
                    .bind(key).bind(window_start).bind(expires_at).bind(previous_start)
                    .bind(read).bind(read_windows.0).bind(read_windows.1)
                    .fetch_one(p).await?;
                Ok(((current, previous), (read_current, read_previous)))
            }
            super::Pool::Sqlite(_) => {
                let hit = self.hit_rate_limit(key, window_start, previous_start, expires_at).await?;
                Ok((hit, self.rate_limit_counts(read, read_windows.0, read_windows.1).await?))
            }
        }
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
