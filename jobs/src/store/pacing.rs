//! `pacing_gates`: the fleet-wide throttle. One row per key (by default a platform); each
//! claim atomically takes the next free slot and moves the gate one spacing on, so starts on
//! one key are never closer than the spacing, however many processes claim at once.

use std::time::Duration;

use super::{Result, Store};
use crate::time::Timestamp;

impl Store {
    /// Claims the next start slot on `key`: `max(next_at, now)`, and moves the gate to that
    /// slot plus `spacing`. The caller waits until the returned slot (or reschedules to it).
    pub async fn claim_pacing_slot(&self, key: &str, spacing: Duration, now: Timestamp) -> Result<Timestamp> {
        self.claim_pacing_slots(key, spacing, 1, now).await
    }

    /// Claims `count` consecutive slots at once (a sweep spreading a chunk of syncs); returns
    /// the first. Slot `i` is the first plus `i × spacing`.
    pub async fn claim_pacing_slots(&self, key: &str, spacing: Duration, count: u32, now: Timestamp) -> Result<Timestamp> {
        let sql = self.pool().pick(
            "INSERT INTO pacing_gates (key, next_at) VALUES ($1, $2 + $3)
             ON CONFLICT (key) DO UPDATE SET next_at = GREATEST(pacing_gates.next_at, $2) + $3
             RETURNING next_at - $3",
            "INSERT INTO pacing_gates (key, next_at) VALUES ($1, $2 + $3)
             ON CONFLICT (key) DO UPDATE SET next_at = MAX(pacing_gates.next_at, $2) + $3
             RETURNING next_at - $3",
        );
        let spacing = spacing.as_millis() as i64 * i64::from(count.max(1));
        let slot: i64 = on_pool!(self, p => sqlx::query_scalar(sql)
            .bind(key).bind(now).bind(spacing).fetch_one(p).await?);
        Ok(Timestamp(slot))
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
