//! The queue tables apalis owns (`apalis.jobs` on PostgreSQL, `Jobs` on SQLite), as socialsync
//! writes them: enqueueing (so the API and the sweeps need no queue runtime, and a sweep
//! enqueues a chunk in one statement), and ending an attempt durably.
//!
//! Why socialsync ends attempts itself (see ARCHITECTURE.md, "Queues"): apalis re-fetches a
//! failed job at once, with no backoff. Instead the runtime writes the outcome here —
//! reschedule with a backoff `run_at`, dead, killed, or deferred — and clears `lock_by`, which
//! makes apalis' own acknowledgement (`… WHERE lock_by = worker`) a no-op.

use serde::Serialize;

use super::{Result, Store};
use crate::time::Timestamp;

/// apalis-sqlite's `run_at` is whole Unix seconds (its claim compares it with
/// `strftime('%s','now')`): socialsync rounds a millisecond time *up*, so a job never runs
/// before the time it asked for, at most a second after it. PostgreSQL keeps milliseconds.
fn sqlite_secs(ms: &str) -> String {
    format!("(({ms} + 999) / 1000)")
}

/// A job to put on a queue.
#[derive(Clone, Debug)]
pub struct NewJob {
    /// The queue, i.e. the job's `KIND`.
    pub queue: &'static str,
    /// The job's arguments as JSON; never a secret.
    pub payload: serde_json::Value,
    pub run_at: Timestamp,
    pub max_attempts: i32,
    /// Jobs with the same key on one queue never wait side by side (e.g. `sync:42`).
    pub dedup_key: Option<String>,
}

/// The job that now stands for the request: new, or the one already waiting (moved earlier
/// if the request asked for an earlier run).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Enqueued {
    pub id: String,
    pub created: bool,
}

/// How an attempt ends, as written by [`Store::end_attempt`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptEnd {
    /// Failed; run again at `run_at` (the backoff is in the database, so it survives restarts).
    Retry { run_at: Timestamp, error: String },
    /// Failed on the last attempt: the job is dead (`Failed`, attempts = max).
    Dead { error: String },
    /// Failed for good on any attempt (`Killed`).
    Killed { error: String },
    /// Not run yet after all (e.g. its pacing slot is later): back to `Pending` at `run_at`,
    /// without counting an attempt, with an updated payload.
    Defer { run_at: Timestamp, payload: serde_json::Value },
}

/// A job waiting for its first run: what the dedup index covers (see migration 0002).
const PENDING: &str = "(status = 'Pending' AND attempts = 0)";

/// The dedup index's key (migration 0008), of the table named by `alias` (`""` or `"twin."`).
/// Every look-up of a waiting job by its key says it so: the planner matches the expression
/// to that index, which is the only one that has it, so no statistics can send the look-up
/// through another.
pub(super) fn dedup_key_of(alias: &str) -> String {
    format!("({alias}job_type || ' ' || {alias}dedup_key)")
}

/// The value of [`dedup_key_of`] for a job on `queue` under `key`.
fn joined_key(queue: &str, key: &str) -> String {
    format!("{queue} {key}")
}

/// The account a job is about, as its payload names it (`account_id`: syncs, refreshes,
/// notifications): PostgreSQL stores that account's platform on the job, by which a claim
/// passes over the jobs of a paused platform ([`crate::pauses`]).
fn account_of(job: &NewJob) -> Option<i64> {
    job.payload.get("account_id")?.as_i64()
}

/// The platform of the account `id` (PostgreSQL), as a scalar subquery.
fn platform_of(id: &str) -> String {
    format!("(SELECT a.platform FROM social_accounts a WHERE a.id = {id})")
}

/// A fresh job id (apalis ids are ULIDs).
pub fn new_job_id() -> String {
    ulid::Ulid::new().to_string()
}

impl Store {
    pub(super) fn jobs_table(&self) -> &'static str {
        self.pool().pick("apalis.jobs", "Jobs")
    }

    /// Enqueues one job. If one is already waiting under the same dedup key, that one stands
    /// for the request instead — moved earlier if this one asked for an earlier run.
    ///
    /// A waiting job due no later is answered as it is, writing nothing. Why: the upsert of a
    /// repeated request (a double click, a client's retry, a frontend asking again) updated the
    /// one waiting row, so concurrent repeats of one key queued on its row lock, each through
    /// the previous one's commit and WAL flush: sync requests for one account ran at 1 200–1 400
    /// a second, half the active statements waiting on that lock (measured 2026-11-28 at c41d8b0).
    /// The job found had not started when it was read, so it runs after the request, as a new
    /// one would. On PostgreSQL the read and the insert are one statement (a round trip more
    /// per new job cost a third of one-by-one enqueueing); SQLite is in-process.
    pub async fn enqueue(&self, job: &NewJob) -> Result<Enqueued> {
        let id = new_job_id();
        let joined = job.dedup_key.as_deref().map(|key| joined_key(job.queue, key));
        let stands: String = match self.pool() {
            super::Pool::Postgres(p) => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(self.enqueue_statement()))
                    .bind(&id)
                    .bind(job.queue)
                    .bind(job.payload.to_string().into_bytes())
                    .bind(job.max_attempts)
                    .bind(job.run_at.millis())
                    .bind(job.dedup_key.as_deref())
                    .bind(joined)
                    .bind(account_of(job))
                    .fetch_one(p)
                    .await?
            }
            super::Pool::Sqlite(p) => {
                let found = sqlx::query_scalar(sqlx::AssertSqlSafe(self.enqueue_statement()))
                    .bind(joined)
                    .bind(job.run_at.millis())
                    .fetch_optional(p)
                    .await?;
                match found {
                    Some(waiting) => waiting,
                    None => self.insert_jobs_with_ids(std::slice::from_ref(job), std::slice::from_ref(&id)).await?.into_iter().next().ok_or_else(|| {
                        super::StoreError::Corrupt(format!("enqueueing on {} returned no job", job.queue))
                    })?,
                }
            }
        };
        Ok(Enqueued { created: stands == id, id: stands })
    }

    /// The statement [`Store::enqueue`] runs first (its parameters: PostgreSQL `$1`–`$8` = id,
    /// queue, payload, max attempts, run-at in ms, dedup key, [`dedup_key_of`]'s value, the
    /// account the job is about ([`account_of`]); SQLite
    /// `$1`, `$2` = that value, run-at in ms): public so that a test can explain its plan.
    #[doc(hidden)]
    pub fn enqueue_statement(&self) -> String {
        // The job waiting under the key, due no later.
        let waiting = |table: &str, key: &str, due: &str| {
            format!("SELECT id FROM {table} WHERE {} = {key} AND dedup_key IS NOT NULL AND {PENDING} AND run_at <= {due}", dedup_key_of(""))
        };
        match self.pool() {
            super::Pool::Postgres(_) => {
                let (head, tail) = self.upsert();
                format!(
                    "WITH waiting AS ({}), fresh AS (
                        {head} SELECT $1, $2, $3, 'Pending', 0, $4, to_timestamp($5::float8 / 1000), 0, $6, {platform} WHERE NOT EXISTS (SELECT 1 FROM waiting) {tail}
                    )
                    SELECT id FROM waiting UNION ALL SELECT id FROM fresh",
                    waiting("apalis.jobs", "$7", "to_timestamp($5::float8 / 1000)"),
                    platform = platform_of("$8::int8"),
                )
            }
            super::Pool::Sqlite(_) => waiting("Jobs", "$1", &sqlite_secs("$2")),
        }
    }

    /// Enqueues a chunk in one statement, with [`Store::enqueue`]'s dedup rule. Returns how many
    /// jobs were created.
    pub async fn enqueue_many(&self, jobs: &[NewJob]) -> Result<u64> {
        // One statement may not touch a waiting row twice: keep the earliest per key.
        let mut by_key: std::collections::HashMap<(&str, &str), &NewJob> = std::collections::HashMap::new();
        let mut unique: Vec<NewJob> = Vec::with_capacity(jobs.len());
        for job in jobs {
            match &job.dedup_key {
                Some(key) => {
                    let slot = by_key.entry((job.queue, key.as_str())).or_insert(job);
                    if job.run_at < slot.run_at {
                        *slot = job;
                    }
                }
                None => unique.push(job.clone()),
            }
        }
        unique.extend(by_key.into_values().cloned());
        if unique.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = unique.iter().map(|_| new_job_id()).collect();
        let stands = self.insert_jobs_with_ids(&unique, &ids).await?;
        let fresh: std::collections::HashSet<&String> = ids.iter().collect();
        Ok(stands.iter().filter(|id| fresh.contains(id)).count() as u64)
    }

    /// The insert of new jobs, to be followed by their rows, and what follows the rows: a job
    /// whose dedup key already waits moves that job earlier instead; returns the standing id.
    fn upsert(&self) -> (String, String) {
        let table = self.jobs_table();
        // PostgreSQL's rows carry the platform of the account they are about (migration 0015).
        let platform = self.pool().pick(", platform", "");
        let head = format!("INSERT INTO {table} (id, job_type, job, status, attempts, max_attempts, run_at, priority, dedup_key{platform}) ");
        let tail = format!(
            // The index's key and predicate as written in migration 0008 (SQLite matches them by
            // their text).
            " ON CONFLICT ({key}) WHERE dedup_key IS NOT NULL AND status = 'Pending' AND attempts = 0
              DO UPDATE SET run_at = {least}({table}.run_at, excluded.run_at) RETURNING id",
            key = dedup_key_of(""),
            least = self.pool().pick("LEAST", "MIN"),
        );
        (head, tail)
    }

    /// Inserts `jobs` with `ids`; a job whose dedup key already waits moves that job earlier
    /// instead. Returns the id standing for each job.
    async fn insert_jobs_with_ids(&self, jobs: &[NewJob], ids: &[String]) -> Result<Vec<String>> {
        let (head, tail) = self.upsert();
        let stands = match self.pool() {
            // Arrays, one per column: a chunk of thousands binds 7 parameters, not 7 per row,
            // which PostgreSQL parses and plans far faster (sweep fan-out, BENCHMARKS.md).
            super::Pool::Postgres(p) => {
                let sql = format!(
                    "{head} SELECT id, job_type, job, 'Pending', 0, max_attempts, to_timestamp(run_at::float8 / 1000), 0, dedup_key, {platform}
                     FROM UNNEST($1::text[], $2::text[], $3::bytea[], $4::int4[], $5::int8[], $6::text[], $7::int8[])
                        AS t (id, job_type, job, max_attempts, run_at, dedup_key, account_id) {tail}",
                    platform = platform_of("t.account_id"),
                );
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(ids)
                    .bind(jobs.iter().map(|j| j.queue).collect::<Vec<_>>())
                    .bind(jobs.iter().map(|j| j.payload.to_string().into_bytes()).collect::<Vec<_>>())
                    .bind(jobs.iter().map(|j| j.max_attempts).collect::<Vec<_>>())
                    .bind(jobs.iter().map(|j| j.run_at.millis()).collect::<Vec<_>>())
                    .bind(jobs.iter().map(|j| j.dedup_key.clone()).collect::<Vec<_>>())
                    .bind(jobs.iter().map(account_of).collect::<Vec<_>>())
                    .fetch_all(p)
                    .await?
            }
            // A bound parameter per cell, in statements of at most 1 000 rows: SQLite takes
            // at most 32 766 parameters a statement.
            super::Pool::Sqlite(p) => {
                let mut stands = Vec::with_capacity(jobs.len());
                for (jobs, ids) in jobs.chunks(1000).zip(ids.chunks(1000)) {
                    let mut q = sqlx::QueryBuilder::new(&head);
                    q.push_values(jobs.iter().zip(ids), |mut b, (job, id)| {
                        b.push_bind(id.clone())
                            .push_bind(job.queue)
                            .push_bind(job.payload.to_string().into_bytes())
                            .push("'Pending'")
                            .push("0")
                            .push_bind(job.max_attempts)
                            .push("((")
                            .push_bind_unseparated(job.run_at.millis())
                            .push_unseparated(" + 999) / 1000)")
                            .push("0")
                            .push_bind(job.dedup_key.clone());
                    });
                    q.push(&tail);
                    stands.extend(q.build_query_scalar::<String>().fetch_all(p).await?);
                }
                stands
            }
        };
        Ok(stands)
    }

    /// The id of the job waiting on `queue` under `dedup_key`, if any.
    pub async fn waiting_job(&self, queue: &str, dedup_key: Option<&str>) -> Result<Option<String>> {
        let Some(key) = dedup_key else { return Ok(None) };
        let sql = format!("SELECT id FROM {} WHERE {} = $1 AND dedup_key IS NOT NULL AND {PENDING}", self.jobs_table(), dedup_key_of(""));
        Ok(on_pool!(self, p => sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(joined_key(queue, key)).fetch_optional(p).await?))
    }

    /// Marks the named apalis workers alive now. apalis only heartbeats a worker while it polls
    /// for jobs, and it stops polling while all its slots are busy — so a worker whose jobs
    /// are all long (syncs waiting for the pacing gate) would look dead and have its running
    /// jobs "rescued" and run twice. The runtime calls this on its own timer instead.
    pub async fn touch_workers(&self, names: &[String]) -> Result<()> {
        let list = serde_json::to_string(names).expect("strings serialize");
        let sql = self.pool().pick(
            "UPDATE apalis.workers SET last_seen = now() WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb))",
            "UPDATE Workers SET last_seen = strftime('%s', 'now') WHERE id IN (SELECT value FROM json_each($1))",
        );
        on_pool!(self, p => sqlx::query(sql).bind(&list).execute(p).await?.rows_affected());
        Ok(())
    }

    /// Counts jobs per status on `queue` (for tests and the dashboard).
    pub async fn queue_counts(&self, queue: &str) -> Result<Vec<(String, i64)>> {
        let sql = format!("SELECT status, COUNT(*) FROM {} WHERE job_type = $1 GROUP BY status ORDER BY status", self.jobs_table());
        Ok(on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(queue).fetch_all(p).await?))
    }

    /// How many jobs of `queue` wait or run, per state (Pending, Queued, Running, Failed; zeros
    /// included), for the workers' depth gauges. Finished jobs stay for days (until the pruner's
    /// retention), so counting every state read all of them every few seconds in every worker process
    /// (60 ms at 200 000 jobs); these states are ranges of the `(status, job_type, id)` index
    /// that stay small. Planned at each run, so a plan kept from an empty table cannot scan it
    /// whole.
    pub async fn queue_depth(&self, queue: &str) -> Result<Vec<(&'static str, i64)>> {
        const UNFINISHED: [&str; 4] = ["Pending", "Queued", "Running", "Failed"];
        let states = UNFINISHED.map(|s| format!("'{s}'")).join(", ");
        let sql = format!("SELECT status, COUNT(*) FROM {} WHERE job_type = $1 AND status IN ({states}) GROUP BY status", self.jobs_table());
        let found: Vec<(String, i64)> = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).persistent(false).bind(queue).fetch_all(p).await?);
        Ok(UNFINISHED.iter().map(|s| (*s, found.iter().find(|(f, _)| f == s).map_or(0, |(_, n)| *n))).collect())
    }

    /// When the longest-waiting due job of `queue` became due (pending, never claimed): what
    /// the "oldest pending" alert watches. One look-up of the claim's own index.
    pub async fn oldest_due(&self, queue: &str) -> Result<Option<Timestamp>> {
        let sql = self.pool().pick(
            "SELECT CAST(extract(epoch FROM MIN(run_at)) * 1000 AS BIGINT) FROM apalis.jobs WHERE job_type = $1 AND status = 'Pending' AND run_at <= now()",
            "SELECT MIN(run_at) * 1000 FROM Jobs WHERE job_type = $1 AND status = 'Pending' AND run_at <= strftime('%s', 'now')",
        );
        let ms: Option<i64> = on_pool!(self, p => sqlx::query_scalar(sql).bind(queue).fetch_one(p).await?);
        Ok(ms.map(Timestamp))
    }

    /// Writes how attempt number `attempt` of job `id`, held by `worker`, ended, and releases
    /// it. Returns false if `worker` no longer holds it (it was rescued as an orphan).
    ///
    /// A retry or deferral that would stand beside a newer waiting job with the same dedup key
    /// is superseded instead: that job will do the work.
    pub async fn end_attempt(&self, id: &str, worker: &str, attempt: i32, end: &AttemptEnd) -> Result<bool> {
        let pg = matches!(self.pool(), super::Pool::Postgres(_));
        let table = self.jobs_table();
        let (run_at, err_json, now) = if pg {
            ("to_timestamp($4::float8 / 1000)".to_owned(), "jsonb_build_object('Err', $5::text)", "now()")
        } else {
            (sqlite_secs("$4"), "json_object('Err', $5)", "strftime('%s', 'now')")
        };
        let (status, attempts, run_at_ms, text, job) = match end {
            AttemptEnd::Retry { run_at, error } => ("Failed", "$3", Some(*run_at), error.clone(), None),
            AttemptEnd::Dead { error } => ("Failed", "GREATEST($3, max_attempts)", None, error.clone(), None),
            AttemptEnd::Killed { error } => ("Killed", "$3", None, error.clone(), None),
            AttemptEnd::Defer { run_at, payload } => ("Pending", "attempts", Some(*run_at), String::new(), Some(payload.to_string())),
        };
        let attempts = if pg { attempts.to_owned() } else { attempts.replace("GREATEST", "MAX") };
        let mut sets = vec![format!("status = '{status}'"), format!("attempts = {attempts}"), "lock_by = NULL".into(), "lock_at = NULL".into()];
        if run_at_ms.is_some() {
            sets.push(format!("run_at = {run_at}"));
        }
        if job.is_some() {
            sets.push("job = $6".into());
        } else {
            sets.push(format!("last_result = {err_json}"));
            sets.push(format!("done_at = {now}"));
        }
        let sql = format!("UPDATE {table} SET {} WHERE id = $1 AND lock_by = $2", sets.join(", "));
        let run_at_ms = run_at_ms.unwrap_or_default().millis();
        let result = on_pool!(self, p => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id).bind(worker).bind(attempt).bind(run_at_ms).bind(&text).bind(job.map(String::into_bytes))
            .execute(p).await.map(|r| r.rows_affected()));
        match result {
            Ok(n) => Ok(n == 1),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                let sql = format!(
                    "UPDATE {table} SET status = 'Done', attempts = $3, lock_by = NULL, lock_at = NULL,
                        last_result = {ok}, done_at = {now} WHERE id = $1 AND lock_by = $2",
                    ok = if pg { "'{\"Ok\": \"superseded by a newer waiting job\"}'::jsonb" } else { "'{\"Ok\": \"superseded by a newer waiting job\"}'" },
                );
                let n = on_pool!(self, p => sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).bind(worker).bind(attempt).execute(p).await?.rows_affected());
                Ok(n == 1)
            }
            Err(e) => Err(e.into()),
        }
    }
}
