//! Deleting history past its retention (see `crate::retention`, which runs these in a pass).
//!
//! Every statement deletes at most `batch` rows, found through an index on the instant they are
//! judged by, in a transaction of its own: a batch holds its rows' locks for milliseconds, and a
//! pruner killed mid-batch rolls that batch back whole. Each predicate names only finished
//! history, so no batch can touch a job that still waits, runs or retries.

use super::{Pool, Result, Store};
use crate::time::Timestamp;

/// The finished states of a queue's jobs, each pruned by its own retention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finished {
    /// Succeeded (apalis `Done`).
    Done,
    /// Cancelled on the dashboard or given up for good (`Killed`).
    Killed,
    /// Failed on its last attempt (`Failed` with `attempts >= max_attempts`); a `Failed` job with
    /// attempts left is retrying and never matches.
    Dead,
}

impl Finished {
    fn predicate(self) -> &'static str {
        match self {
            Finished::Done => "status = 'Done'",
            Finished::Killed => "status = 'Killed'",
            Finished::Dead => "status = 'Failed' AND attempts >= max_attempts",
        }
    }
}

/// The smallest job id (a ULID) of a job created at `at` or later: ids below it were created
/// before `at`, which lets a batch walk the `(status, job_type, id)` index in order.
pub(super) fn first_id_at(at: Timestamp) -> String {
    ulid::Ulid::from_parts(at.millis().max(0) as u64, 0).to_string()
}

impl Store {
    /// Deletes up to `batch` jobs of `queue` in the state `which` that were created and finished
    /// before `before`; returns how many.
    pub async fn prune_finished_jobs(&self, queue: &str, which: Finished, before: Timestamp, batch: u32) -> Result<u64> {
        let table = self.jobs_table();
        // SKIP LOCKED: a row a dashboard action holds now is left for the next batch.
        let (done_before, lock) = self.pool().pick(("to_timestamp($3::float8 / 1000)", "FOR UPDATE SKIP LOCKED"), ("$3 / 1000", ""));
        let sql = format!(
            "DELETE FROM {table} WHERE id IN (
                SELECT id FROM {table} WHERE {} AND job_type = $1 AND id < $2 AND done_at < {done_before}
                ORDER BY id LIMIT $4 {lock})",
            which.predicate()
        );
        Ok(on_pool!(self, p => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(queue).bind(first_id_at(before)).bind(before.millis()).bind(i64::from(batch))
            .execute(p).await?.rows_affected()))
    }

    /// Deletes up to `batch` run records that finished before `before`, or that a crash left
    /// open and that started before it.
    pub async fn prune_job_runs(&self, before: Timestamp, batch: u32) -> Result<u64> {
        const FINISHED: &str = "DELETE FROM job_runs WHERE id IN (
            SELECT id FROM job_runs WHERE finished_at < $1 ORDER BY finished_at LIMIT $2)";
        const OPEN: &str = "DELETE FROM job_runs WHERE id IN (
            SELECT id FROM job_runs WHERE finished_at IS NULL AND started_at < $1 ORDER BY started_at LIMIT $2)";
        let mut n = 0;
        for sql in [FINISHED, OPEN] {
            n += on_pool!(self, p => sqlx::query(sql).bind(before).bind(i64::from(batch)).execute(p).await?.rows_affected());
            if n >= u64::from(batch) {
                break;
            }
        }
        Ok(n)
    }

    /// Deletes up to `batch` notifications delivered before `before` (undelivered ones stay).
    pub async fn prune_notifications(&self, before: Timestamp, batch: u32) -> Result<u64> {
        const SQL: &str = "DELETE FROM notifications WHERE id IN (
            SELECT id FROM notifications WHERE delivered_at IS NOT NULL AND delivered_at < $1 ORDER BY delivered_at LIMIT $2)";
        Ok(on_pool!(self, p => sqlx::query(SQL).bind(before).bind(i64::from(batch)).execute(p).await?.rows_affected()))
    }

    /// Deletes up to `batch` snapshots taken in `[from, before)` that are not the last of their
    /// account's UTC day. Returns how many, and the latest `taken_at` deleted: every snapshot
    /// before it in that range has been judged, so the next batch can start there.
    pub async fn thin_snapshots(&self, from: Timestamp, before: Timestamp, batch: u32) -> Result<(u64, Option<Timestamp>)> {
        const SQL: &str = "DELETE FROM account_snapshots WHERE id IN (
            SELECT s.id FROM account_snapshots s
            WHERE s.taken_at >= $1 AND s.taken_at < $2
              AND EXISTS (SELECT 1 FROM account_snapshots t
                  WHERE t.account_id = s.account_id
                    AND t.taken_at >= s.taken_at AND t.taken_at < (s.taken_at / 86400000 + 1) * 86400000
                    AND (t.taken_at > s.taken_at OR t.id > s.id))
            ORDER BY s.taken_at LIMIT $3)
            RETURNING taken_at";
        let taken: Vec<Timestamp> =
            on_pool!(self, p => sqlx::query_scalar(SQL).bind(from).bind(before).bind(i64::from(batch)).fetch_all(p).await?);
        Ok((taken.len() as u64, taken.into_iter().max()))
    }

    /// Deletes up to `batch` snapshots taken before `before`.
    pub async fn prune_snapshots(&self, before: Timestamp, batch: u32) -> Result<u64> {
        const SQL: &str = "DELETE FROM account_snapshots WHERE id IN (
            SELECT id FROM account_snapshots WHERE taken_at < $1 ORDER BY taken_at LIMIT $2)";
        Ok(on_pool!(self, p => sqlx::query(SQL).bind(before).bind(i64::from(batch)).execute(p).await?.rows_affected()))
    }

    /// Deletes the firings of each schedule fired before `before`, except each schedule's latest
    /// (what start-up catch-up compares against).
    pub async fn prune_cron_runs(&self, before: Timestamp) -> Result<u64> {
        const SQL: &str = "DELETE FROM cron_runs WHERE fire_at < $1
            AND fire_at < (SELECT MAX(c.fire_at) FROM cron_runs c WHERE c.schedule = cron_runs.schedule)";
        Ok(on_pool!(self, p => sqlx::query(SQL).bind(before).execute(p).await?.rows_affected()))
    }

    /// Deletes the rows of worker incarnations silent since before `before`: apalis' queue
    /// workers that hold no job (a worker that still holds one is how the orphan rescue finds
    /// it, so it stays until then), and socialsync's process rows.
    pub async fn prune_workers(&self, before: Timestamp) -> Result<u64> {
        let queue_workers = self.pool().pick(
            "DELETE FROM apalis.workers w WHERE last_seen < to_timestamp($1::float8 / 1000)
               AND NOT EXISTS (SELECT 1 FROM apalis.jobs j WHERE j.lock_by = w.id)",
            "DELETE FROM Workers WHERE last_seen < $1 / 1000
               AND NOT EXISTS (SELECT 1 FROM Jobs j WHERE j.lock_by = Workers.id)",
        );
        let n = on_pool!(self, p => sqlx::query(queue_workers).bind(before.millis()).execute(p).await?.rows_affected());
        Ok(n + self.purge_worker_processes(before).await?)
    }

    /// Where the retention work named `name` got to, if it ever ran.
    pub async fn retention_mark(&self, name: &str) -> Result<Option<Timestamp>> {
        const SQL: &str = "SELECT upto FROM retention_marks WHERE name = $1";
        Ok(on_pool!(self, p => sqlx::query_scalar(SQL).bind(name).fetch_optional(p).await?))
    }

    pub async fn set_retention_mark(&self, name: &str, upto: Timestamp) -> Result<()> {
        const SQL: &str = "INSERT INTO retention_marks (name, upto) VALUES ($1, $2)
            ON CONFLICT (name) DO UPDATE SET upto = excluded.upto";
        on_pool!(self, p => sqlx::query(SQL).bind(name).bind(upto).execute(p).await?.rows_affected());
        Ok(())
    }

    /// SQLite: returns free pages to the file system beyond a tenth of the file, so a file past
    /// retention stops growing and shrinks after a large deletion without a full `VACUUM`
    /// (which would lock the database for its whole run). Needs `auto_vacuum = INCREMENTAL`,
    /// which a file has when socialsync created it; elsewhere freed pages are reused but not
    /// returned. Returns the pages released. PostgreSQL: autovacuum's work; nothing done.
    pub async fn release_free_pages(&self) -> Result<u64> {
        let Pool::Sqlite(p) = self.pool() else { return Ok(0) };
        let (mode, pages, free): (i64, i64, i64) =
            sqlx::query_as("SELECT * FROM pragma_auto_vacuum, pragma_page_count, pragma_freelist_count").fetch_one(p).await?;
        let excess = free - pages / 10;
        if mode != 2 || excess <= 0 {
            return Ok(0);
        }
        sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA incremental_vacuum({excess})"))).execute(p).await?;
        Ok(excess as u64)
    }
}

/// A table's size on disk, its indexes included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableSize {
    pub table: String,
    pub bytes: i64,
    /// PostgreSQL's estimate of its rows (as fresh as the last ANALYZE); SQLite: none.
    pub rows_estimate: Option<i64>,
}

impl Store {
    /// The size of each of socialsync's tables and apalis' queue tables, largest first. SQLite:
    /// pages per table from `dbstat`, or `None` where SQLite was built without it.
    pub async fn table_sizes(&self) -> Result<Option<Vec<TableSize>>> {
        match self.pool() {
            Pool::Postgres(p) => {
                const SQL: &str = "
                    SELECT CASE WHEN n.nspname = 'apalis' THEN 'apalis.' || c.relname ELSE c.relname END,
                        pg_total_relation_size(c.oid), GREATEST(c.reltuples, 0)::bigint
                    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE c.relkind = 'r' AND (n.nspname = 'apalis' OR n.nspname = current_schema())
                      AND c.relname NOT LIKE '\\_sqlx%' AND c.relname NOT LIKE 'socialsync\\_migrations'
                    ORDER BY 2 DESC, 1";
                let rows: Vec<(String, i64, i64)> = sqlx::query_as(SQL).fetch_all(p).await?;
                Ok(Some(rows.into_iter().map(|(table, bytes, rows)| TableSize { table, bytes, rows_estimate: Some(rows) }).collect()))
            }
            Pool::Sqlite(p) => {
                const SQL: &str = "
                    SELECT m.tbl_name, SUM(d.pgsize) FROM dbstat d JOIN sqlite_master m ON m.name = d.name
                    WHERE m.tbl_name NOT LIKE '\\_sqlx%' ESCAPE '\\' AND m.tbl_name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
                      AND m.tbl_name <> 'socialsync_migrations'
                    GROUP BY 1 ORDER BY 2 DESC, 1";
                match sqlx::query_as::<_, (String, i64)>(SQL).fetch_all(p).await {
                    Ok(rows) => Ok(Some(rows.into_iter().map(|(table, bytes)| TableSize { table, bytes, rows_estimate: None }).collect())),
                    Err(sqlx::Error::Database(e)) if e.message().contains("dbstat") => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }
}
