//! `queue_concurrency`: a queue's attempts at once per worker process, set live by ops in place
//! of the processes' configured concurrency. Announced on [`super::PAUSES_CHANNEL`] (payload
//! `concurrency:{queue}`) by the statement that changes it, as pauses are.

use super::{Result, Store};
use crate::time::Timestamp;

/// The most a queue may be set to, per process: beyond it a process's database connections,
/// not its slots, bound the work.
pub const MAX_LIVE_CONCURRENCY: u32 = 256;

/// A queue's live concurrency, as stored.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct LiveConcurrency {
    pub queue: String,
    pub concurrency: i32,
    pub set_by: String,
    pub set_at: Timestamp,
}

macro_rules! upsert {
    () => {
        "INSERT INTO queue_concurrency (queue, concurrency, set_by, set_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (queue) DO UPDATE SET concurrency = excluded.concurrency, set_by = excluded.set_by, set_at = excluded.set_at"
    };
}

macro_rules! delete {
    () => {
        "DELETE FROM queue_concurrency WHERE queue = $1 RETURNING queue, concurrency, set_by, set_at"
    };
}

impl Store {
    /// Sets `c.queue`'s concurrency per worker process (1 to [`MAX_LIVE_CONCURRENCY`]).
    pub async fn set_concurrency(&self, c: &LiveConcurrency) -> Result<()> {
        let sql = self.pool().pick(
            concat!("WITH c AS (", upsert!(), " RETURNING queue) SELECT pg_notify('socialsync_pauses', 'concurrency:' || queue) FROM c"),
            upsert!(),
        );
        on_pool!(self, pool => sqlx::query(sql).bind(&c.queue).bind(c.concurrency).bind(&c.set_by).bind(c.set_at).execute(pool).await.map(drop)?);
        Ok(())
    }

    /// Gives `queue` back its configured concurrency; returns the live one it had, if any.
    pub async fn reset_concurrency(&self, queue: &str) -> Result<Option<LiveConcurrency>> {
        let sql = self.pool().pick(
            concat!("WITH c AS (", delete!(), ") SELECT c.*, pg_notify('socialsync_pauses', 'concurrency:' || c.queue)::text AS announced FROM c"),
            delete!(),
        );
        Ok(on_pool!(self, pool => sqlx::query_as(sql).bind(queue).fetch_optional(pool).await?))
    }

    /// Every queue's live concurrency, by queue.
    pub async fn live_concurrency(&self) -> Result<Vec<LiveConcurrency>> {
        const SQL: &str = "SELECT queue, concurrency, set_by, set_at FROM queue_concurrency ORDER BY queue";
        Ok(on_pool!(self, p => sqlx::query_as(SQL).fetch_all(p).await?))
    }
}
