//! `pauses`: what ops have paused ([`crate::pauses`]). On PostgreSQL every change is announced
//! on [`PAUSES_CHANNEL`] by the statement that makes it, so workers hear it when it commits.

use super::{Result, Store};
use crate::{pauses::Pause, time::Timestamp};

/// The notification channel of pause changes (PostgreSQL); the payload is the scope.
pub const PAUSES_CHANNEL: &str = "socialsync_pauses";

macro_rules! upsert {
    () => {
        "INSERT INTO pauses (scope, paused_by, reason, paused_at, until) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (scope) DO UPDATE SET paused_by = excluded.paused_by, reason = excluded.reason,
            paused_at = excluded.paused_at, until = excluded.until"
    };
}

macro_rules! delete {
    () => {
        "DELETE FROM pauses WHERE scope = $1 RETURNING scope, paused_by, reason, paused_at, until"
    };
}

impl Store {
    /// Pauses `p.scope`, or replaces the pause already on it (its author, reason and end).
    pub async fn pause(&self, p: &Pause) -> Result<()> {
        let sql = self.pool().pick(
            concat!("WITH p AS (", upsert!(), " RETURNING scope) SELECT pg_notify('socialsync_pauses', scope) FROM p"),
            upsert!(),
        );
        on_pool!(self, pool => sqlx::query(sql).bind(&p.scope).bind(&p.paused_by).bind(&p.reason).bind(p.paused_at).bind(p.until).execute(pool).await.map(drop)?);
        Ok(())
    }

    /// Ends the pause on `scope`; returns it, if there was one.
    pub async fn resume(&self, scope: &str) -> Result<Option<Pause>> {
        let sql = self.pool().pick(
            concat!("WITH p AS (", delete!(), ") SELECT p.*, pg_notify('socialsync_pauses', p.scope)::text AS announced FROM p"),
            delete!(),
        );
        Ok(on_pool!(self, pool => sqlx::query_as(sql).bind(scope).fetch_optional(pool).await?))
    }

    /// The pauses in force at `now`, by scope.
    pub async fn pauses(&self, now: Timestamp) -> Result<Vec<Pause>> {
        const SQL: &str = "SELECT scope, paused_by, reason, paused_at, until FROM pauses WHERE until IS NULL OR until > $1 ORDER BY scope";
        Ok(on_pool!(self, p => sqlx::query_as(SQL).bind(now).fetch_all(p).await?))
    }
}
