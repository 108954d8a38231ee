//! `rate_limit_counters`: counters shared by every API process. The policy (window length,
//! limit, fixed or sliding) lives with the API; the store only counts atomically.

use super::{Result, Store};
use crate::time::Timestamp;

impl Store {
    /// Adds one hit to `key` in the window starting at `window_start` and returns the count
    /// after it, in one statement. The row may be purged after `expires_at`.
    pub async fn hit_rate_limit(&self, key: &str, window_start: Timestamp, expires_at: Timestamp) -> Result<i64> {
        const SQL: &str = "
            INSERT INTO rate_limit_counters (key, window_start, count, expires_at) VALUES ($1, $2, 1, $3)
            ON CONFLICT (key, window_start) DO UPDATE SET count = rate_limit_counters.count + 1
            RETURNING count";
        Ok(on_pool!(self, p => sqlx::query_scalar(SQL)
            .bind(key).bind(window_start).bind(expires_at).fetch_one(p).await?))
    }

    /// The count of `key` in one window, without adding to it (for sliding-window estimates).
    pub async fn rate_limit_count(&self, key: &str, window_start: Timestamp) -> Result<i64> {
        const SQL: &str = "SELECT count FROM rate_limit_counters WHERE key = $1 AND window_start = $2";
        let n: Option<i64> = on_pool!(self, p => sqlx::query_scalar(SQL)
            .bind(key).bind(window_start).fetch_optional(p).await?);
        Ok(n.unwrap_or(0))
    }

    /// Deletes counters whose windows ended before `now`; returns how many.
    pub async fn purge_rate_limits(&self, now: Timestamp) -> Result<u64> {
        const SQL: &str = "DELETE FROM rate_limit_counters WHERE expires_at < $1";
        Ok(on_pool!(self, p => sqlx::query(SQL).bind(now).execute(p).await?.rows_affected()))
    }
}
