//! `pacing_gates`: the fleet-wide throttle. One row per key (by default a platform) holding
//! the earliest instant the next start may happen. A start reserves its slot in one atomic
//! statement and moves the gate one spacing past it, so two slots on a key are never closer
//! than the spacing, however many processes race. Slots are reserved a little ahead, on the
//! database's clock; `jobs::pacing` says why.

use std::time::Duration;

use super::{Result, Store};
use crate::time::Timestamp;

impl Store {
    /// Reserves the gate's next slot on `key`: the later of its next free instant and
    /// `earliest`, and moves the gate one `spacing` past it — unless that slot is more than
    /// `max_wait` after `earliest`; then nothing is reserved and `Err(next free instant)` says
    /// when to come back. Instants are on the database's clock ([`Store::database_micros`]).
    /// Slots are whole milliseconds: a spacing with a fraction of one is rounded up, so that a
    /// fractional `PACING_MARGIN_MS` widens the gap rather than vanishing from it.
    pub async fn reserve_pacing_slot(
        &self,
        key: &str,
        spacing: Duration,
        earliest: Timestamp,
        max_wait: Duration,
    ) -> Result<std::result::Result<Timestamp, Timestamp>> {
        let sql = self.pool().pick(
            "INSERT INTO pacing_gates (key, next_at) VALUES ($1, $2 + $3)
             ON CONFLICT (key) DO UPDATE SET next_at = GREATEST(pacing_gates.next_at, $2) + $3
             WHERE pacing_gates.next_at <= $2 + $4
             RETURNING next_at - $3",
            "INSERT INTO pacing_gates (key, next_at) VALUES ($1, $2 + $3)
             ON CONFLICT (key) DO UPDATE SET next_at = MAX(pacing_gates.next_at, $2) + $3
             WHERE pacing_gates.next_at <= $2 + $4
             RETURNING next_at - $3",
        );
        let (spacing, max_wait) = (spacing.as_micros().div_ceil(1000) as i64, max_wait.as_millis() as i64);
        let slot: Option<Timestamp> = on_pool!(self, p => sqlx::query_scalar(sql)
            .bind(key).bind(earliest).bind(spacing).bind(max_wait).fetch_optional(p).await?);
        match slot {
            Some(slot) => Ok(Ok(slot)),
            None => Ok(Err(self.pacing_next_at(key).await?.unwrap_or(earliest))),
        }
    }

    /// The database's clock in microseconds since the epoch (SQLite's has milliseconds),
    /// which every process's pacing follows.
    pub async fn database_micros(&self) -> Result<i64> {
        let sql = self.pool().pick(
            "SELECT (extract(epoch from clock_timestamp()) * 1000000)::bigint",
            "SELECT CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER) * 1000",
        );
        Ok(on_pool!(self, p => sqlx::query_scalar(sql).fetch_one(p).await?))
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
