//! The queue as ops see it: jobs by state, searched with filters, paged by id, and acted on
//! (retry, cancel, delete) one by one, by selection, or everything a filter matches.
//!
//! **States.** apalis stores `Pending`, `Queued`, `Running`, `Done`, `Failed` and `Killed`;
//! with socialsync's retries (see `queue.rs`) those read as six states: *pending* (due now),
//! *scheduled* (due later), *running* (claimed), *done*, *retrying* (failed, attempts left) and
//! *dead* (failed on its last attempt, or killed).
//!
//! **Paging.** Job ids are ULIDs, which sort by creation time, so "newest first" is
//! `ORDER BY id DESC` on the id index and the next page starts below the last id seen
//! (keyset paging: as fast on page 1 000 as on page 1). A time range becomes an id range.

use std::fmt::Write as _;

use super::{Pool, Result, Store};
use crate::time::Timestamp;

/// A job's state as the dashboard names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobState {
    Pending,
    Scheduled,
    Running,
    Retrying,
    Dead,
    Done,
}

impl JobState {
    pub const ALL: [JobState; 6] =
        [JobState::Pending, JobState::Scheduled, JobState::Running, JobState::Retrying, JobState::Dead, JobState::Done];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Scheduled => "scheduled",
            JobState::Running => "running",
            JobState::Retrying => "retrying",
            JobState::Dead => "dead",
            JobState::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The state of a row from its apalis status.
    pub fn of(status: &str, due_later: bool, exhausted: bool) -> JobState {
        match status {
            "Queued" | "Running" => JobState::Running,
            "Done" => JobState::Done,
            "Killed" => JobState::Dead,
            "Failed" if exhausted => JobState::Dead,
            "Failed" => JobState::Retrying,
            _ if due_later => JobState::Scheduled,
            _ => JobState::Pending,
        }
    }

    /// The SQL condition for this state (`now` is the backend's current-time expression).
    fn condition(self, now: &str) -> String {
        match self {
            JobState::Pending => format!("(status = 'Pending' AND run_at <= {now})"),
            JobState::Scheduled => format!("(status = 'Pending' AND run_at > {now})"),
            JobState::Running => "(status IN ('Queued', 'Running'))".into(),
            JobState::Retrying => "(status = 'Failed' AND attempts < max_attempts)".into(),
            JobState::Dead => "(status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))".into(),
            JobState::Done => "(status = 'Done')".into(),
        }
    }
}

/// What the job list is filtered by; every field is optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub queue: Option<String>,
    pub state: Option<JobState>,
    /// Created at or after / before (from the ULID's time).
    pub created_from: Option<Timestamp>,
    pub created_to: Option<Timestamp>,
    pub account_id: Option<i64>,
    /// Part of the last error's text, case-insensitive.
    pub error: Option<String>,
    pub id: Option<String>,
}

/// A job row: the job list, a job's detail, the API's job status.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct JobRow {
    pub id: String,
    pub queue: String,
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: Timestamp,
    pub lock_by: Option<String>,
    pub lock_at: Option<Timestamp>,
    pub done_at: Option<Timestamp>,
    pub last_result: Option<String>,
    pub dedup_key: Option<String>,
    /// The job's arguments as JSON text; never a secret.
    pub payload: String,
    pub due_later: bool,
}

impl JobRow {
    pub fn state(&self) -> JobState {
        JobState::of(&self.status, self.due_later, self.attempts >= self.max_attempts)
    }

    pub fn payload_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.payload).unwrap_or(serde_json::Value::Null)
    }

    /// When the job was enqueued (the ULID's time).
    pub fn created_at(&self) -> Option<Timestamp> {
        ulid::Ulid::from_string(&self.id).ok().map(|u| Timestamp(u.timestamp_ms() as i64))
    }

    /// The text of the last error, if the last attempt failed.
    pub fn last_error(&self) -> Option<String> {
        let text = self.last_result.as_deref()?;
        let value: serde_json::Value =
            serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned()));
        match value.get("Err")? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Null => None,
            other => Some(other.to_string()),
        }
    }
}

/// What an action applies to.
#[derive(Clone, Debug)]
pub enum Selection {
    Ids(Vec<String>),
    /// Every job the filter matches at the moment the action runs.
    Matching(JobFilter),
}

/// What ops can do to jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobAction {
    /// Run again now: retrying, dead and done jobs. A job that had used up its attempts gets
    /// one more.
    Retry,
    /// Stop: pending, scheduled, retrying and running jobs become dead. A running attempt
    /// finishes, but its result is discarded (its worker no longer holds the job).
    Cancel,
    /// Remove: any job not running.
    Delete,
}

impl JobAction {
    pub fn parse(s: &str) -> Option<JobAction> {
        match s {
            "retry" => Some(JobAction::Retry),
            "cancel" => Some(JobAction::Cancel),
            "delete" => Some(JobAction::Delete),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobAction::Retry => "retry",
            JobAction::Cancel => "cancel",
            JobAction::Delete => "delete",
        }
    }

    /// The states this action applies to; other selected jobs are left alone.
    pub fn applies_to(self) -> &'static [JobState] {
        match self {
            JobAction::Retry => &[JobState::Retrying, JobState::Dead, JobState::Done],
            JobAction::Cancel => &[JobState::Pending, JobState::Scheduled, JobState::Retrying, JobState::Running],
            JobAction::Delete => &[JobState::Pending, JobState::Scheduled, JobState::Retrying, JobState::Dead, JobState::Done],
        }
    }
}

/// A bind parameter of a query built at run time.
enum Arg {
    Text(String),
    Int(i64),
}

/// SQL text with `$N` parameters and their values, built for one backend.
struct Sql {
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    fn bind(&mut self, arg: Arg) -> String {
        self.args.push(arg);
        format!("${}", self.args.len())
    }
}

macro_rules! bind_all {
    ($query:expr, $args:expr) => {{
        let mut q = $query;
        for a in $args {
            q = match a {
                Arg::Text(s) => q.bind(s),
                Arg::Int(i) => q.bind(i),
            };
        }
        q
    }};
}

/// Backend-specific expressions over the jobs table.
struct Dialect {
    table: &'static str,
    now: &'static str,
    columns: &'static str,
    /// The last error's text.
    error: &'static str,
    like: &'static str,
}

fn dialect(pool: &Pool) -> Dialect {
    pool.pick(
        Dialect {
            table: "apalis.jobs",
            now: "now()",
            columns: "id, job_type AS queue, status, attempts, max_attempts,
                (extract(epoch FROM run_at) * 1000)::bigint AS run_at, lock_by,
                (extract(epoch FROM lock_at) * 1000)::bigint AS lock_at,
                (extract(epoch FROM done_at) * 1000)::bigint AS done_at,
                last_result::text AS last_result, dedup_key, convert_from(job, 'UTF8') AS payload,
                run_at > now() AS due_later",
            error: "(last_result ->> 'Err')",
            like: "ILIKE",
        },
        Dialect {
            table: "Jobs",
            now: "strftime('%s', 'now')",
            columns: "id, job_type AS queue, status, attempts, max_attempts, run_at * 1000 AS run_at, lock_by,
                lock_at * 1000 AS lock_at, done_at * 1000 AS done_at, last_result, dedup_key, CAST(job AS TEXT) AS payload,
                run_at > strftime('%s', 'now') AS due_later",
            error: "json_extract(last_result, '$.Err')",
            like: "LIKE",
        },
    )
}

/// The smallest ULID of millisecond `t`: ids at or above it were created at or after `t`.
fn ulid_floor(t: Timestamp) -> String {
    ulid::Ulid::from_parts(t.millis().max(0) as u64, 0).to_string()
}

impl JobFilter {
    /// Appends ` AND …` for every set field.
    fn push_where(&self, sql: &mut Sql, d: &Dialect) {
        if let Some(q) = &self.queue {
            let p = sql.bind(Arg::Text(q.clone()));
            let _ = write!(sql.text, " AND job_type = {p}");
        }
        if let Some(s) = self.state {
            let _ = write!(sql.text, " AND {}", s.condition(d.now));
        }
        if let Some(t) = self.created_from {
            let p = sql.bind(Arg::Text(ulid_floor(t)));
            let _ = write!(sql.text, " AND id >= {p}");
        }
        if let Some(t) = self.created_to {
            let p = sql.bind(Arg::Text(ulid_floor(t)));
            let _ = write!(sql.text, " AND id < {p}");
        }
        if let Some(a) = self.account_id {
            // An account's jobs (its refreshes and syncs) carry it in their dedup key: a
            // text comparison, where reading it from the payload would parse every row's JSON.
            let account = crate::AccountId(a);
            let refresh = sql.bind(Arg::Text(crate::refresh::dedup_key(account)));
            let sync = sql.bind(Arg::Text(crate::sync::dedup_key(account)));
            let _ = write!(sql.text, " AND dedup_key IN ({refresh}, {sync})");
        }
        if let Some(e) = self.error.as_deref().filter(|e| !e.is_empty()) {
            let escaped = e.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            let p = sql.bind(Arg::Text(format!("%{escaped}%")));
            let _ = write!(sql.text, " AND {} {} {p} ESCAPE '\\'", d.error, d.like);
        }
        if let Some(id) = &self.id {
            let p = sql.bind(Arg::Text(id.clone()));
            let _ = write!(sql.text, " AND id = {p}");
        }
    }
}

impl Store {
    /// Up to `limit` jobs matching `filter`, newest first, created before the job `before`.
    pub async fn search_jobs(&self, filter: &JobFilter, before: Option<&str>, limit: u32) -> Result<Vec<JobRow>> {
        let d = dialect(self.pool());
        let mut sql = Sql { text: format!("SELECT {} FROM {} WHERE 1 = 1", d.columns, d.table), args: vec![] };
        filter.push_where(&mut sql, &d);
        if let Some(b) = before {
            let p = sql.bind(Arg::Text(b.to_owned()));
            let _ = write!(sql.text, " AND id < {p}");
        }
        let p = sql.bind(Arg::Int(i64::from(limit)));
        let _ = write!(sql.text, " ORDER BY id DESC LIMIT {p}");
        let Sql { text, args } = sql;
        Ok(on_pool!(self, p => bind_all!(sqlx::query_as(sqlx::AssertSqlSafe(text)), args).fetch_all(p).await?))
    }

    /// How many jobs `filter` matches.
    pub async fn count_jobs(&self, filter: &JobFilter) -> Result<i64> {
        let d = dialect(self.pool());
        let mut sql = Sql { text: format!("SELECT COUNT(*) FROM {} WHERE 1 = 1", d.table), args: vec![] };
        filter.push_where(&mut sql, &d);
        let Sql { text, args } = sql;
        Ok(on_pool!(self, p => bind_all!(sqlx::query_scalar(sqlx::AssertSqlSafe(text)), args).fetch_one(p).await?))
    }

    /// One job.
    pub async fn job_row(&self, id: &str) -> Result<Option<JobRow>> {
        let filter = JobFilter { id: Some(id.to_owned()), ..JobFilter::default() };
        Ok(self.search_jobs(&filter, None, 1).await?.into_iter().next())
    }

    /// Applies `action` to the selected jobs in the states it applies to; returns how many
    /// changed. One statement, so "all matching" acts on a consistent set.
    ///
    /// A retry never puts a job back beside a waiting twin (same queue and dedup key): that
    /// twin will do the work, so such jobs are left as they are.
    pub async fn act_on_jobs(&self, action: JobAction, selection: &Selection, now: Timestamp) -> Result<u64> {
        let d = dialect(self.pool());
        let pg = matches!(self.pool(), Pool::Postgres(_));
        // `WHERE 1 = 1 AND (the action's states) AND (the selection)`.
        let states: Vec<String> = action.applies_to().iter().map(|s| s.condition(d.now)).collect();
        let mut sql = Sql { text: format!(" AND ({})", states.join(" OR ")), args: vec![] };
        match selection {
            Selection::Ids(ids) => {
                let p = sql.bind(Arg::Text(serde_json::to_string(ids).expect("strings serialize")));
                let ids = if pg { format!("SELECT jsonb_array_elements_text({p}::jsonb)") } else { format!("SELECT value FROM json_each({p})") };
                let _ = write!(sql.text, " AND id IN ({ids})");
            }
            Selection::Matching(filter) => filter.push_where(&mut sql, &d),
        }
        let filter_sql = std::mem::take(&mut sql.text);
        let table = d.table;
        sql.text = match action {
            JobAction::Retry => {
                let (now_ts, greatest) = if pg { ("now()", "GREATEST") } else { ("strftime('%s', 'now')", "MAX") };
                format!(
                    "UPDATE {table} SET status = 'Pending', run_at = {now_ts}, lock_by = NULL, lock_at = NULL, done_at = NULL,
                        max_attempts = {greatest}(max_attempts, attempts + 1)
                     WHERE 1 = 1{filter_sql}
                       AND NOT (attempts = 0 AND dedup_key IS NOT NULL AND EXISTS (
                           SELECT 1 FROM {table} AS twin WHERE {twin_key} = {own_key}
                             AND twin.dedup_key IS NOT NULL AND twin.status = 'Pending' AND twin.attempts = 0))",
                    twin_key = super::queue::dedup_key_of("twin."),
                    own_key = super::queue::dedup_key_of(&format!("{table}.")),
                )
            }
            JobAction::Cancel => {
                let p = sql.bind(Arg::Int(now.millis()));
                let (done, result) = if pg {
                    (format!("to_timestamp({p}::float8 / 1000)"), "'{\"Err\": \"cancelled from the dashboard\"}'::jsonb")
                } else {
                    (format!("({p} / 1000)"), "'{\"Err\": \"cancelled from the dashboard\"}'")
                };
                format!(
                    "UPDATE {table} SET status = 'Killed', lock_by = NULL, lock_at = NULL, done_at = {done}, last_result = {result}
                     WHERE 1 = 1{filter_sql}"
                )
            }
            JobAction::Delete => format!("DELETE FROM {table} WHERE 1 = 1{filter_sql}"),
        };
        let Sql { text, args } = sql;
        // Planned at each run: an action is rare, and a plan a connection kept from when the
        // table was small (`id IN (SELECT … ids)` as a hash join) would scan it whole.
        Ok(on_pool!(self, p => bind_all!(sqlx::query(sqlx::AssertSqlSafe(text)), args).persistent(false).execute(p).await?.rows_affected()))
    }
}
