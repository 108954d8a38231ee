//! Retention on PostgreSQL and on SQLite from one body: a pruner pass deletes finished history
//! past its retention, keeps what is within it, and never touches a job that waits, runs or
//! retries.

use std::time::Duration;

use jobs::{
    AccountId, Platform, Store, Timestamp,
    retention::{self, Retention},
    store::{JobRunEnding, JobOutcome, JobRunStart, NewNotification, Pool, ProcessBeat, Snapshot},
    sync::{self, SyncReason},
};
use testkit::both_backends;

const DAY: Duration = Duration::from_secs(86_400);

fn days_ago(now: Timestamp, n: u32) -> Timestamp {
    now.minus(DAY * n)
}

/// Enqueues a sync job and rewrites it as if created at `created` and left in `status` with
/// `attempts` at `finished` (ids are ULIDs of their creation time, as apalis makes them).
async fn aged_job(store: &Store, account: i64, created: Timestamp, status: &str, attempts: i32, finished: Option<Timestamp>, lock_by: Option<&str>) -> String {
    let id = store.enqueue(&sync::job(AccountId(account), SyncReason::Manual, created)).await.unwrap().id;
    let old_id = ulid::Ulid::from_parts(created.millis() as u64, rand_bits(account)).to_string();
    let sql = store.pool().pick(
        "UPDATE apalis.jobs SET id = $2, status = $3, attempts = $4, done_at = to_timestamp($5::float8 / 1000), lock_by = $6,
            run_at = to_timestamp($7::float8 / 1000) WHERE id = $1",
        "UPDATE Jobs SET id = $2, status = $3, attempts = $4, done_at = $5 / 1000, lock_by = $6, run_at = $7 / 1000 WHERE id = $1",
    );
    let finished = finished.map(|t| t.millis());
    if let Some(worker) = lock_by {
        register_worker(store, worker, Timestamp::now()).await;
    }
    exec(store, sql, |q| q.bind(id.clone()).bind(old_id.clone()).bind(status.to_owned()).bind(attempts).bind(finished).bind(lock_by.map(str::to_owned)).bind(created.millis())).await;
    old_id
}

fn rand_bits(seed: i64) -> u128 {
    (seed as u128) << 40 | 0xabcdef
}

/// Registers an apalis queue worker last seen at `seen`.
async fn register_worker(store: &Store, name: &str, seen: Timestamp) {
    let sql = store.pool().pick(
        "INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen) VALUES ($1, 'sync', 'test', '', to_timestamp($2::float8 / 1000))
         ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen",
        "INSERT INTO Workers (id, worker_type, storage_name, layers, last_seen) VALUES ($1, 'sync', 'test', '', $2 / 1000)
         ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen",
    );
    exec(store, sql, |q| q.bind(name.to_owned()).bind(seen.millis())).await;
}

/// Runs one statement built by `bind` on whichever backend.
async fn exec<F>(store: &Store, sql: &'static str, bind: F)
where
    F: Fn(Query<'static>) -> Query<'static>,
{
    match store.pool() {
        Pool::Postgres(p) => {
            let q = sqlx::query(sql);
            bind(Query::Pg(q)).pg().execute(p).await.unwrap();
        }
        Pool::Sqlite(p) => {
            let q = sqlx::query(sql);
            bind(Query::Lite(q)).lite().execute(p).await.unwrap();
        }
    };
}

/// A query of either backend, to bind the same values to either.
enum Query<'q> {
    Pg(sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>),
    Lite(sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>),
}

impl<'q> Query<'q> {
    fn bind<T>(self, v: T) -> Self
    where
        T: 'q + sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + sqlx::Encode<'q, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite> + Send,
    {
        match self {
            Query::Pg(q) => Query::Pg(q.bind(v)),
            Query::Lite(q) => Query::Lite(q.bind(v)),
        }
    }
    fn pg(self) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        match self {
            Query::Pg(q) => q,
            Query::Lite(_) => unreachable!(),
        }
    }
    fn lite(self) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
        match self {
            Query::Lite(q) => q,
            Query::Pg(_) => unreachable!(),
        }
    }
}

/// The first column of `sql`'s rows, sorted.
async fn names(store: &Store, sql: &str) -> Vec<String> {
    let mut v: Vec<String> = match store.pool() {
        Pool::Postgres(p) => sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_all(p).await.unwrap(),
        Pool::Sqlite(p) => sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_all(p).await.unwrap(),
    };
    v.sort();
    v
}

async fn job_exists(store: &Store, id: &str) -> bool {
    store.job_row(id).await.unwrap().is_some()
}


/// A run record of job `job` started at `start`, finished at `end` (open if `None`).
async fn run_record(store: &Store, job: &str, start: Timestamp, end: Option<Timestamp>) -> i64 {
    let run = JobRunStart { queue: "sync", job_id: job, account_id: None, attempt: 1, worker: "w" };
    let ending = end.map(|at| JobRunEnding { outcome: JobOutcome::Succeeded, error_class: None, error: None, at });
    store.record_job_runs(&[(run, start, ending.as_ref())]).await.unwrap()[0]
}

both_backends! {
    async fn finished_jobs_past_retention_go_and_live_ones_never(db: TestDb) {
        let s = &db.store;
        let now = Timestamp::now();
        let old = days_ago(now, 40);
        let done_8d = aged_job(s, 1, days_ago(now, 8), "Done", 1, Some(days_ago(now, 8)), None).await;
        let done_6d = aged_job(s, 2, days_ago(now, 6), "Done", 1, Some(days_ago(now, 6)), None).await;
        // Created long ago, retried from the dashboard, done yesterday: judged by its end.
        let done_lately = aged_job(s, 3, old, "Done", 2, Some(days_ago(now, 1)), None).await;
        let dead_31d = aged_job(s, 4, days_ago(now, 31), "Failed", sync::MAX_ATTEMPTS, Some(days_ago(now, 31)), None).await;
        let dead_29d = aged_job(s, 5, days_ago(now, 29), "Failed", sync::MAX_ATTEMPTS, Some(days_ago(now, 29)), None).await;
        let killed_31d = aged_job(s, 6, days_ago(now, 31), "Killed", 1, Some(days_ago(now, 31)), None).await;
        let killed_29d = aged_job(s, 7, days_ago(now, 29), "Killed", 1, Some(days_ago(now, 29)), None).await;
        // Live jobs, however old: never pruned.
        let retrying = aged_job(s, 8, old, "Failed", 1, Some(old), None).await;
        let pending = aged_job(s, 9, old, "Pending", 0, None, None).await;
        let deferred = aged_job(s, 10, old, "Pending", 2, Some(old), None).await;
        let running = aged_job(s, 11, old, "Running", 1, None, Some("w1.sync")).await;
        let queued = aged_job(s, 12, old, "Queued", 1, None, Some("w1.sync")).await;

        let report = retention::prune(s, &Retention::default(), now, retention::BATCH).await.unwrap();
        assert_eq!(report.removed["jobs"], 3, "{report:?}");
        for gone in [&done_8d, &dead_31d, &killed_31d] {
            assert!(!job_exists(s, gone).await, "{gone} is past its retention");
        }
        for kept in [&done_6d, &done_lately, &dead_29d, &killed_29d, &retrying, &pending, &deferred, &running, &queued] {
            assert!(job_exists(s, kept).await, "{kept} must stay");
        }
        // A second pass finds nothing more; with everything kept forever, a pass deletes nothing.
        let again = retention::prune(s, &Retention::default(), now, retention::BATCH).await.unwrap();
        assert_eq!(again.total(), 0, "{again:?}");
        let forever = Retention { done_jobs: None, dead_jobs: None, ..Retention::default() };
        let later = retention::prune(s, &forever, now.plus(DAY * 365), retention::BATCH).await.unwrap();
        assert_eq!(later.removed.get("jobs").copied().unwrap_or(0), 0, "forever keeps them");
    }

    async fn batches_add_up_to_the_same_rows(db: TestDb) {
        let s = &db.store;
        let now = Timestamp::now();
        let mut ids = vec![];
        for i in 0..7 {
            ids.push(aged_job(s, 100 + i, days_ago(now, 10), "Done", 1, Some(days_ago(now, 10)), None).await);
        }
        let keep = aged_job(s, 200, days_ago(now, 10), "Pending", 0, None, None).await;
        for id in &ids {
            run_record(s, id, days_ago(now, 40), Some(days_ago(now, 40))).await;
        }
        let report = retention::prune(s, &Retention::default(), now, 2).await.unwrap();
        assert_eq!((report.removed["jobs"], report.removed["job_runs"]), (7, 7), "{report:?}");
        assert!(job_exists(s, &keep).await);
    }

    async fn runs_notifications_firings_workers_and_audit_entries_past_retention_go(db: TestDb) {
        let s = &db.store;
        let now = Timestamp::now();
        let finished_old = run_record(s, "j1", days_ago(now, 31), Some(days_ago(now, 31))).await;
        let finished_new = run_record(s, "j2", days_ago(now, 29), Some(days_ago(now, 29))).await;
        let open_old = run_record(s, "j3", days_ago(now, 31), None).await;
        let open_new = run_record(s, "j4", now.minus(Duration::from_secs(60)), None).await;

        let note = |kind: &str| NewNotification { user_id: "u1".into(), account_id: None, kind: kind.into(), payload: serde_json::json!({}) };
        let delivered_old = s.add_notification(&note("old"), days_ago(now, 32)).await.unwrap();
        s.record_delivery(delivered_old, None, days_ago(now, 31)).await.unwrap();
        let delivered_new = s.add_notification(&note("new"), days_ago(now, 2)).await.unwrap();
        s.record_delivery(delivered_new, None, days_ago(now, 1)).await.unwrap();
        let undelivered_old = s.add_notification(&note("stuck"), days_ago(now, 60)).await.unwrap();
        s.record_delivery(undelivered_old, Some("503"), days_ago(now, 59)).await.unwrap();

        for (schedule, days) in [("data_sync", 100), ("data_sync", 80), ("token_refresh", 100)] {
            assert!(s.claim_cron_run(schedule, days_ago(now, days), "w", days_ago(now, days)).await.unwrap());
        }

        let beat = |name: &'static str| ProcessBeat { name, host: "h", pid: 1, queues: &[], started_at: days_ago(now, 3), stale_after: Duration::from_secs(5) };
        s.beat_process(&beat("gone-process"), days_ago(now, 2)).await.unwrap();
        s.beat_process(&beat("live-process"), now).await.unwrap();
        register_worker(s, "silent.sync", days_ago(now, 2)).await;
        register_worker(s, "live.sync", now).await;
        // Silent for days but still holding a job: the orphan rescue needs its row.
        let held = aged_job(s, 1, days_ago(now, 2), "Running", 1, None, Some("holder.sync")).await;
        register_worker(s, "holder.sync", days_ago(now, 2)).await;

        for (days, action) in [(366, "jobs.retry"), (364, "pause")] {
            let entry = jobs::store::NewAuditEntry { actor: "ana", action, target: "t", outcome: "ok" };
            s.audit(&entry, days_ago(now, days)).await.unwrap();
        }

        let report = retention::prune(s, &Retention::default(), now, retention::BATCH).await.unwrap();
        assert_eq!(report.removed["job_runs"], 2, "{report:?}");
        assert_eq!(report.removed["audit_log"], 1, "a year is kept");
        let trail = s.audit_entries(&jobs::store::AuditFilter::default(), None, 10).await.unwrap();
        assert_eq!(trail.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["pause"]);
        let runs = |job: &'static str| async move { s.job_runs(job).await.unwrap().into_iter().map(|r| r.id).collect::<Vec<_>>() };
        assert_eq!((runs("j1").await, runs("j2").await, runs("j3").await, runs("j4").await), (vec![], vec![finished_new], vec![], vec![open_new]));
        let _ = (finished_old, open_old);

        assert_eq!(report.removed["notifications"], 1);
        assert!(s.notification(delivered_old).await.unwrap().is_none());
        assert!(s.notification(delivered_new).await.unwrap().is_some());
        assert!(s.notification(undelivered_old).await.unwrap().is_some(), "an undelivered notification stays");

        assert_eq!(report.removed["cron_runs"], 1, "data_sync's older firing; each schedule's latest stays");
        assert_eq!(s.cron_runs("data_sync", 10).await.unwrap().len(), 1);
        assert_eq!(s.cron_runs("token_refresh", 10).await.unwrap().len(), 1);

        assert_eq!(report.removed["workers"], 2, "the silent queue worker and the silent process");
        assert_eq!(names(s, "SELECT name FROM worker_processes").await, ["live-process"]);
        let queue_workers = s.pool().pick("SELECT id FROM apalis.workers", "SELECT id FROM Workers");
        assert_eq!(names(s, queue_workers).await, ["holder.sync", "live.sync"]);
        assert!(s.jobs_held_by("holder").await.unwrap().iter().any(|(id, ..)| *id == held));
        assert_eq!(s.prune_workers(now).await.unwrap(), 0, "the holder stays while it holds a job");
    }

    async fn snapshots_thin_to_one_a_day_then_go(db: TestDb) {
        let s = &db.store;
        let now = Timestamp::now();
        let today = Timestamp(now.millis() - now.millis().rem_euclid(DAY.as_millis() as i64));
        let a = testkit::account(s, Platform::Tiktok, "thin", Timestamp::now()).await;
        let b = testkit::account(s, Platform::Tiktok, "other", Timestamp::now()).await;
        let at = |days: u32, hour: u64| today.minus(DAY * days).plus(Duration::from_secs(hour * 3600));
        let taken = [
            (a, at(40, 1)), (a, at(40, 9)), (a, at(40, 17)), // thinned to the 17:00 one
            (b, at(40, 2)),                                  // the only one of b's day: kept
            (a, at(35, 12)),                                 // one that day: kept
            (a, at(10, 1)), (a, at(10, 2)), (a, at(10, 3)),  // within 30 days: all kept
            (a, at(800, 5)),                                 // past two years: gone
        ];
        for (account, t) in taken {
            s.save_sync(account, None, &Snapshot { taken_at: t, followers_count: Some(t.millis() % 1000), ..Default::default() }, &[], t).await.unwrap();
        }
        let report = retention::prune(s, &Retention::default(), now, 1).await.unwrap();
        assert_eq!(report.removed["account_snapshots"], 3, "{report:?}");
        let mut left: Vec<Timestamp> = s.snapshots(a, 100).await.unwrap().into_iter().map(|x| x.taken_at).collect();
        left.sort();
        assert_eq!(left, vec![at(40, 17), at(35, 12), at(10, 1), at(10, 2), at(10, 3)]);
        assert_eq!(s.snapshots(b, 100).await.unwrap().len(), 1);

        // The next pass starts where this one stopped: a snapshot added behind the boundary
        // (it cannot happen in production: snapshots are taken now) is left alone.
        s.save_sync(a, None, &Snapshot { taken_at: at(40, 3), ..Default::default() }, &[], at(40, 3)).await.unwrap();
        let again = retention::prune(s, &Retention::default(), now, retention::BATCH).await.unwrap();
        assert_eq!(again.total(), 0, "{again:?}");
    }
}

/// SQLite: a file past retention gives back its pages (it was created with incremental
/// auto-vacuum).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_file_shrinks_after_a_pass() {
    let db = testkit::TestDb::new(testkit::Backend::Sqlite).await;
    let s = &db.store;
    let now = Timestamp::now();
    let Pool::Sqlite(p) = s.pool() else { unreachable!() };
    let pages = || async { sqlx::query_scalar::<_, i64>("PRAGMA page_count").fetch_one(p).await.unwrap() };
    let mut starts = vec![];
    for i in 0..20_000 {
        starts.push((JobRunStart { queue: "sync", job_id: "j", account_id: None, attempt: i, worker: "a-worker-name-of-some-length" }, days_ago(now, 40)));
    }
    let ending = JobRunEnding { outcome: JobOutcome::Dead, error_class: Some("transient".into()), error: Some("x".repeat(200)), at: days_ago(now, 40) };
    let runs: Vec<_> = starts.iter().map(|(r, at)| (r.clone(), *at, Some(&ending))).collect();
    s.record_job_runs(&runs).await.unwrap();
    let before = pages().await;
    let report = retention::prune(s, &Retention::default(), now, retention::BATCH).await.unwrap();
    assert_eq!(report.removed["job_runs"], 20_000);
    assert!(report.pages_released > 0, "{report:?}");
    let after = pages().await;
    assert!(after < before / 2, "{before} pages before, {after} after");
}

both_backends! {
    async fn table_sizes_name_the_tables(db: TestDb) {
        let s = &db.store;
        let sizes = s.table_sizes().await.unwrap().expect("dbstat is compiled into the bundled SQLite");
        let names: Vec<&str> = sizes.iter().map(|t| t.table.as_str()).collect();
        let jobs = s.pool().pick("apalis.jobs", "Jobs");
        for t in [jobs, "job_runs", "account_snapshots", "notifications", "cron_runs"] {
            assert!(names.contains(&t), "{t} in {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("sqlx") || *n == "socialsync_migrations"), "{names:?}");
        assert!(sizes.iter().all(|t| t.bytes > 0), "{sizes:?}");
    }
}
