//! What the dashboard reads and does, on PostgreSQL and on SQLite from one body: job states,
//! search filters and keyset paging, the actions, the overview counts, worker processes.

use std::time::Duration;

use jobs::{
    AccountId, Store, Timestamp,
    store::{JobAction, JobFilter, JobOutcome, JobRunStart, JobState, NewJob, ProcessBeat, ProcessQueue, Pool, Selection},
    sync::{self, SyncReason},
};
use testkit::both_backends;

fn sync_job(account: i64, run_at: Timestamp) -> NewJob {
    sync::job(AccountId(account), SyncReason::Manual, run_at)
}

fn hour_ago() -> Timestamp {
    Timestamp::now().minus(Duration::from_secs(3600))
}

fn in_an_hour() -> Timestamp {
    Timestamp::now().plus(Duration::from_secs(3600))
}

/// Puts a job in an apalis status directly, as a worker would leave it.
async fn set(store: &Store, id: &str, status: &str, attempts: i32, lock_by: Option<&str>, error: Option<&str>) {
    let sql = store.pool().pick(
        "UPDATE apalis.jobs SET status = $2, attempts = $3, lock_by = $4,
            last_result = CASE WHEN $5::text IS NULL THEN NULL ELSE jsonb_build_object('Err', $5::text) END WHERE id = $1",
        "UPDATE Jobs SET status = $2, attempts = $3, lock_by = $4,
            last_result = CASE WHEN $5 IS NULL THEN NULL ELSE json_object('Err', $5) END WHERE id = $1",
    );
    if let Some(w) = lock_by {
        register_worker(store, w).await;
    }
    match store.pool() {
        Pool::Postgres(p) => sqlx::query(sql).bind(id).bind(status).bind(attempts).bind(lock_by).bind(error).execute(p).await.unwrap().rows_affected(),
        Pool::Sqlite(p) => sqlx::query(sql).bind(id).bind(status).bind(attempts).bind(lock_by).bind(error).execute(p).await.unwrap().rows_affected(),
    };
}

/// A lock names a registered apalis worker.
async fn register_worker(store: &Store, name: &str) {
    let sql = store.pool().pick(
        "INSERT INTO apalis.workers (id, worker_type, storage_name, layers) VALUES ($1, 'sync', 'test', '') ON CONFLICT DO NOTHING",
        "INSERT OR IGNORE INTO Workers (id, worker_type, storage_name, layers) VALUES ($1, 'sync', 'test', '')",
    );
    match store.pool() {
        Pool::Postgres(p) => sqlx::query(sql).bind(name).execute(p).await.unwrap().rows_affected(),
        Pool::Sqlite(p) => sqlx::query(sql).bind(name).execute(p).await.unwrap().rows_affected(),
    };
}

async fn states(store: &Store) -> Vec<(String, JobState)> {
    let mut rows: Vec<_> = store.search_jobs(&JobFilter::default(), None, 100).await.unwrap().into_iter().map(|j| (j.id.clone(), j.state())).collect();
    rows.sort();
    rows
}

both_backends! {
    async fn six_states_and_the_overview_counts(db: TestDb) {
        let s = &db.store;
        let pending = s.enqueue(&sync_job(1, hour_ago())).await.unwrap().id;
        let scheduled = s.enqueue(&sync_job(2, in_an_hour())).await.unwrap().id;
        let running = s.enqueue(&sync_job(3, hour_ago())).await.unwrap().id;
        let retrying = s.enqueue(&sync_job(4, in_an_hour())).await.unwrap().id;
        let dead = s.enqueue(&sync_job(5, hour_ago())).await.unwrap().id;
        let done = s.enqueue(&sync_job(6, hour_ago())).await.unwrap().id;
        set(s, &running, "Running", 1, Some("w1.sync"), None).await;
        set(s, &retrying, "Failed", 2, None, Some("transient: 503")).await;
        set(s, &dead, "Failed", sync::MAX_ATTEMPTS, None, Some("transient: 503")).await;
        set(s, &done, "Done", 1, None, None).await;

        let by_id: std::collections::HashMap<_, _> = states(s).await.into_iter().collect();
        assert_eq!(by_id[&pending], JobState::Pending);
        assert_eq!(by_id[&scheduled], JobState::Scheduled);
        assert_eq!(by_id[&running], JobState::Running);
        assert_eq!(by_id[&retrying], JobState::Retrying);
        assert_eq!(by_id[&dead], JobState::Dead);
        assert_eq!(by_id[&done], JobState::Done);

        let overview = s.queue_overview().await.unwrap();
        let q = &overview[sync::KIND];
        for state in JobState::ALL {
            assert_eq!(q.counts[state.as_str()], 1, "{state:?}");
            let filter = JobFilter { state: Some(state), ..JobFilter::default() };
            assert_eq!(s.count_jobs(&filter).await.unwrap(), 1, "{state:?}");
        }
        let oldest = q.oldest_pending.expect("one pending job");
        assert!((oldest.millis() - hour_ago().millis()).abs() < 5_000, "due an hour ago");
        assert_eq!(s.job_row(&dead).await.unwrap().unwrap().last_error().as_deref(), Some("transient: 503"));

        // The workers' depth gauges: unfinished states only, zeros included.
        assert_eq!(s.queue_depth(sync::KIND).await.unwrap(), vec![("Pending", 2), ("Queued", 0), ("Running", 1), ("Failed", 2)]);
        assert_eq!(s.queue_depth("connect").await.unwrap(), vec![("Pending", 0), ("Queued", 0), ("Running", 0), ("Failed", 0)]);
    }

    async fn filters_and_keyset_pages(db: TestDb) {
        let s = &db.store;
        let mut ids = vec![];
        for n in 0..7 {
            ids.push(s.enqueue(&sync_job(10 + n, in_an_hour())).await.unwrap().id);
            tokio::time::sleep(Duration::from_millis(2)).await; // distinct ULID milliseconds
        }
        s.enqueue(&jobs::refresh::job(AccountId(11), in_an_hour(), Timestamp::now())).await.unwrap();
        set(s, &ids[3], "Failed", 1, None, Some("transient: Instagram answered 503_x")).await;

        // Newest first, three at a time, each page below the last id seen.
        let syncs = JobFilter { queue: Some(sync::KIND.into()), ..JobFilter::default() };
        let mut seen = vec![];
        let mut before: Option<String> = None;
        loop {
            let page = s.search_jobs(&syncs, before.as_deref(), 3).await.unwrap();
            if page.is_empty() { break; }
            before = page.last().map(|j| j.id.clone());
            seen.extend(page.into_iter().map(|j| j.id));
        }
        let mut newest_first = ids.clone();
        newest_first.reverse();
        assert_eq!(seen, newest_first);

        let by_account = JobFilter { account_id: Some(11), ..JobFilter::default() };
        assert_eq!(s.count_jobs(&by_account).await.unwrap(), 2, "the sync and the refresh of account 11");
        let by_error = JobFilter { error: Some("answered 503_".into()), ..JobFilter::default() };
        let found = s.search_jobs(&by_error, None, 10).await.unwrap();
        assert_eq!(found.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), [ids[3].as_str()], "case-insensitive, _ taken literally");
        assert_eq!(s.count_jobs(&JobFilter { error: Some("answered 503%".into()), ..JobFilter::default() }).await.unwrap(), 0, "% taken literally");
        let by_id = JobFilter { id: Some(ids[5].clone()), ..JobFilter::default() };
        assert_eq!(s.count_jobs(&by_id).await.unwrap(), 1);

        // A time range is an id range: the first job's millisecond up to (not including) the fourth's.
        let created = |id: &str| Timestamp(ulid::Ulid::from_string(id).unwrap().timestamp_ms() as i64);
        let range = JobFilter { created_from: Some(created(&ids[0])), created_to: Some(created(&ids[3])), ..syncs.clone() };
        assert_eq!(s.count_jobs(&range).await.unwrap(), 3);
    }

    async fn actions_change_only_the_states_they_apply_to(db: TestDb) {
        let s = &db.store;
        let running = s.enqueue(&sync_job(1, hour_ago())).await.unwrap().id;
        let dead = s.enqueue(&sync_job(2, in_an_hour())).await.unwrap().id;
        let scheduled = s.enqueue(&sync_job(3, in_an_hour())).await.unwrap().id;
        set(s, &running, "Running", 1, Some("w1.sync"), None).await;
        set(s, &dead, "Failed", sync::MAX_ATTEMPTS, None, Some("permanent: gone")).await;
        let now = Timestamp::now();
        let all = Selection::Ids(vec![running.clone(), dead.clone(), scheduled.clone()]);

        // Retry: only the dead one, due now, with one more attempt allowed.
        assert_eq!(s.act_on_jobs(JobAction::Retry, &all, now).await.unwrap(), 1);
        let retried = s.job_row(&dead).await.unwrap().unwrap();
        assert_eq!(retried.state(), JobState::Pending);
        assert_eq!(retried.max_attempts, sync::MAX_ATTEMPTS + 1);
        assert!(retried.lock_by.is_none());

        // Cancel: the pending, the scheduled and the running one become dead; a running
        // attempt loses its lock, so its worker's end is not written over the cancel.
        assert_eq!(s.act_on_jobs(JobAction::Cancel, &all, now).await.unwrap(), 3);
        for id in [&running, &dead, &scheduled] {
            let j = s.job_row(id).await.unwrap().unwrap();
            assert_eq!(j.state(), JobState::Dead, "{id}");
            assert_eq!(j.last_error().as_deref(), Some("cancelled from the dashboard"));
            assert!(j.lock_by.is_none());
        }
        assert!(!s.end_attempt(&running, "w1.sync", 1, &jobs::store::AttemptEnd::Dead { error: "late".into() }).await.unwrap());

        // Delete everything matching a filter, except what runs.
        let fresh_running = s.enqueue(&sync_job(4, hour_ago())).await.unwrap().id;
        set(s, &fresh_running, "Running", 1, Some("w1.sync"), None).await;
        let matching = Selection::Matching(JobFilter { queue: Some(sync::KIND.into()), ..JobFilter::default() });
        assert_eq!(s.act_on_jobs(JobAction::Delete, &matching, now).await.unwrap(), 3);
        assert_eq!(states(s).await, vec![(fresh_running, JobState::Running)]);
    }

    async fn a_retry_never_stands_beside_a_waiting_twin(db: TestDb) {
        let s = &db.store;
        // Cancelled before its first run, then the same sync asked for again.
        let cancelled = s.enqueue(&sync_job(1, in_an_hour())).await.unwrap().id;
        assert_eq!(s.act_on_jobs(JobAction::Cancel, &Selection::Ids(vec![cancelled.clone()]), Timestamp::now()).await.unwrap(), 1);
        let twin = s.enqueue(&sync_job(1, in_an_hour())).await.unwrap();
        assert!(twin.created);
        assert_eq!(s.act_on_jobs(JobAction::Retry, &Selection::Ids(vec![cancelled.clone()]), Timestamp::now()).await.unwrap(), 0, "the twin does the work");
        assert_eq!(s.job_row(&cancelled).await.unwrap().unwrap().state(), JobState::Dead);
        s.act_on_jobs(JobAction::Delete, &Selection::Ids(vec![twin.id]), Timestamp::now()).await.unwrap();
        assert_eq!(s.act_on_jobs(JobAction::Retry, &Selection::Ids(vec![cancelled.clone()]), Timestamp::now()).await.unwrap(), 1, "alone, it runs again");
    }

    async fn attempts_per_minute_and_worker_processes(db: TestDb) {
        let s = &db.store;
        let now = Timestamp::now();
        for (i, outcome) in [JobOutcome::Succeeded, JobOutcome::Succeeded, JobOutcome::Dead, JobOutcome::Deferred].into_iter().enumerate() {
            let id = format!("job-{i}");
            let run = s.start_job_run(&JobRunStart { queue: sync::KIND, job_id: &id, account_id: None, attempt: 1, worker: "p1" }, now).await.unwrap();
            s.finish_job_run(run, outcome, None, None, now).await.unwrap();
        }
        let minutes = s.attempts_per_minute(now.minus(Duration::from_secs(120))).await.unwrap();
        assert_eq!(minutes.len(), 1);
        assert_eq!((minutes[0].succeeded, minutes[0].failed), (2, 1), "deferrals are not attempts");

        let queues = [ProcessQueue { queue: sync::KIND.into(), concurrency: 8 }];
        let beat = ProcessBeat { name: "host-1-abc", host: "host", pid: 1, queues: &queues, started_at: now, stale_after: Duration::from_secs(5) };
        s.beat_process(&beat, now).await.unwrap();
        s.beat_process(&beat, now).await.unwrap();
        let held = s.enqueue(&sync_job(1, hour_ago())).await.unwrap().id;
        set(s, &held, "Running", 1, Some("host-1-abc.sync"), None).await;
        let procs = s.worker_processes(now).await.unwrap();
        assert_eq!(procs.len(), 1);
        assert_eq!(procs[0].queue_list(), queues);
        assert!(!procs[0].is_stale(now.plus(Duration::from_secs(4))));
        assert!(procs[0].is_stale(now.plus(Duration::from_secs(6))));
        assert_eq!(s.jobs_held_by("host-1-abc").await.unwrap().into_iter().map(|(id, _, _)| id).collect::<Vec<_>>(), [held]);
        assert!(s.jobs_held_by("host-1").await.unwrap().is_empty(), "a prefix of another name holds nothing");
        s.stop_process("host-1-abc", now).await.unwrap();
        assert!(!s.worker_processes(now).await.unwrap()[0].is_stale(now.plus(Duration::from_secs(60))), "stopped, not stale");
        let later = now.plus(Duration::from_secs(2 * 86_400));
        assert!(s.worker_processes(later).await.unwrap().is_empty(), "forgotten after a day");
        assert_eq!(s.purge_worker_processes(later.minus(jobs::store::FORGET_PROCESSES_AFTER)).await.unwrap(), 1);
    }
}

/// Past the threshold, PostgreSQL's overview estimates `done` from the table's statistics and
/// still counts every other state exactly; without statistics it counts exactly.
#[tokio::test]
async fn a_big_table_gets_an_estimated_done_count() {
    let db = testkit::TestDb::new(testkit::Backend::Postgres).await;
    let (s, Pool::Postgres(pool)) = (&db.store, db.store.pool()) else { unreachable!("a PostgreSQL store") };
    sqlx::query("ALTER TABLE apalis.jobs SET (autovacuum_enabled = false)").execute(pool).await.unwrap();
    let jobs: Vec<_> = (0..3_000).map(|i| sync_job(100 + i, hour_ago())).collect();
    s.enqueue_many(&jobs).await.unwrap();
    let refreshes: Vec<_> = (0..1_000).map(|i| jobs::refresh::job(AccountId(100 + i), hour_ago(), Timestamp::now())).collect();
    s.enqueue_many(&refreshes).await.unwrap();
    // 2 500 syncs and every refresh done; 500 syncs pending, 20 of those dead.
    sqlx::query("UPDATE apalis.jobs SET status = 'Done' WHERE job_type = 'refresh' OR id IN (SELECT id FROM apalis.jobs WHERE job_type = 'sync' ORDER BY id LIMIT 2500)")
        .execute(pool).await.unwrap();
    sqlx::query("UPDATE apalis.jobs SET status = 'Killed' WHERE id IN (SELECT id FROM apalis.jobs WHERE status = 'Pending' ORDER BY id LIMIT 20)")
        .execute(pool).await.unwrap();
    let exact = |o: &std::collections::BTreeMap<String, jobs::store::QueueCounts>, q: &str| {
        let c = &o[q];
        (c.counts["done"], c.counts["pending"], c.counts["dead"], c.estimated.clone())
    };

    let unanalysed = s.queue_overview_exact_below(0.0).await.unwrap();
    assert_eq!(exact(&unanalysed, sync::KIND), (2_500, 480, 20, vec![]), "no statistics yet: exact");

    sqlx::query("ANALYZE apalis.jobs").execute(pool).await.unwrap();
    let estimated = s.queue_overview_exact_below(0.0).await.unwrap();
    let (done, pending, dead, marked) = exact(&estimated, sync::KIND);
    assert_eq!((pending, dead, marked), (480, 20, vec!["done"]), "other states stay exact");
    assert!((done - 2_500).abs() <= 125, "sync done ≈ 2 500, got {done}");
    let (done, _, _, marked) = exact(&estimated, jobs::refresh::KIND);
    assert!((done - 1_000).abs() <= 50 && marked == ["done"], "refresh done ≈ 1 000, got {done}");

    let small = s.queue_overview().await.unwrap();
    assert_eq!(exact(&small, sync::KIND), (2_500, 480, 20, vec![]), "below the threshold: exact");
}
