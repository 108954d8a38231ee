//! `pacing_gates`: the fleet-wide throttle. One row per key (by default a platform) holding
//! the earliest instant the next start may happen. A start takes the gate in one atomic
//! statement — only if the gate is open — and moves it one spacing past its own start, so two
//! starts on a key are never closer than the spacing, however many processes race, and a start
//! that runs late pushes the next one back instead of crowding it.

use std::time::Duration;

use super::{Result, Store};
use crate::time::Timestamp;

impl Store {
    /// Takes the gate on `key` at `now` if it is open (its next start is due): moves it to
    /// `now + spacing` and returns `Ok(())`. Otherwise returns `Err(next_at)`, when to try
    /// again.
    pub async fn take_pacing_gate(&self, key: &str, spacing: Duration, now: Timestamp) -> Result<std::result::Result<(), Timestamp>> {
        const TAKE: &str = "
            INSERT INTO pacing_gates (key, next_at) VALUES ($1, $2 + $3)
            ON CONFLICT (key) DO UPDATE SET next_at = $2 + $3 WHERE pacing_gates.next_at <= $2
            RETURNING next_at";
        let spacing = spacing.as_millis() as i64;
        let taken: Option<i64> = on_pool!(self, p => sqlx::query_scalar(TAKE)
            .bind(key).bind(now).bind(spacing).fetch_optional(p).await?);
        if taken.is_some() {
            return Ok(Ok(()));
        }
        Ok(Err(self.pacing_next_at(key).await?.unwrap_or(now)))
    }

    /// Pushes the gate back so no slot on `key` starts before `until` (a platform said "slow
    /// down"). Never moves it earlier.
    pub async fn push_back_pacing(&self, key: &str, until: Timestamp) -> Result<()> {
        let sql = self.pool().pick(
            "INSERT INTO pacing_gates (key, next_at) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET next_at = GREATEST(pacing_gates.next_at, $2)",
            "INSERT INTO pacing_gates (key, next_at) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET next_at = MAX(pacing_gates.next_at, $2)",
        );
        on_pool!(self, p => sqlx::query(sql).bind(key).bind(until).execute(p).await?.rows_affected());
        Ok(())
    }

    /// The gate's next free slot, if it has been used.
    pub async fn pacing_next_at(&self, key: &str) -> Result<Option<Timestamp>> {
        const SQL: &str = "SELECT next_at FROM pacing_gates WHERE key = $1";
        Ok(on_pool!(self, p => sqlx::query_scalar(SQL).bind(key).fetch_optional(p).await?))
    }
}
