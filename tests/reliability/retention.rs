//! The pruner SIGKILLed in the middle of a pass over a large history.

use std::time::Duration;

use jobs::Timestamp;
use testkit::{Backend, TestDb, eventually, platform::SandboxServer};

use crate::{
    NEVER, pg, report,
    support::fleet::{Fleet, take_turn},
};

// 10 ────────────────────────────────────────────────────────────────────────────────────────────

const DAY_MS: i64 = 86_400_000;

/// (old run records, old done jobs, live jobs) in the database now.
async fn census(db: &TestDb, old: i64) -> (i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM job_runs WHERE finished_at < $1),
            (SELECT COUNT(*) FROM apalis.jobs WHERE status = 'Done'),
            (SELECT COUNT(*) FROM apalis.jobs WHERE status <> 'Done')",
    )
    .bind(old)
    .fetch_one(pg(db))
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruner_killed_mid_pass() {
    let _turn = take_turn();
    let sb = SandboxServer::start().await;
    let db = TestDb::new(Backend::Postgres).await;
    let now = Timestamp::now().millis();
    let (runs, done, live) = (crate::setting("RELIABILITY_PRUNE_RUNS", 400_000), 50_000i64, 600i64);
    // History past retention: run records that ended 40 days ago, jobs done 10 days ago (ids
    // are ULIDs of their creation, as the queue makes them).
    sqlx::query(
        "INSERT INTO job_runs (queue, job_id, attempt, worker, started_at, finished_at, outcome)
         SELECT 'sync', 'old-' || g, 1, 'w', $1, $1 + 50, 'succeeded' FROM generate_series(1, $2) g",
    )
    .bind(now - 40 * DAY_MS)
    .bind(runs as i64)
    .execute(pg(&db))
    .await
    .unwrap();
    let ulid_at = |ms: i64, i: i64| ulid::Ulid::from_parts((ms + i) as u64, 7).to_string();
    let done_ids: Vec<String> = (0..done).map(|i| ulid_at(now - 10 * DAY_MS, i)).collect();
    sqlx::query(
        "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, done_at, priority)
         SELECT id, 'sync', convert_to('{}', 'UTF8'), 'Done', 1, 5, to_timestamp($2::float8 / 1000), to_timestamp($2::float8 / 1000), 0
         FROM UNNEST($1::text[]) AS t (id)",
    )
    .bind(&done_ids)
    .bind(now - 10 * DAY_MS)
    .execute(pg(&db))
    .await
    .unwrap();
    // Live jobs as old as the history: scheduled for tomorrow, and retrying tomorrow after a
    // failure 40 days ago. None may ever be pruned.
    let live_ids: Vec<String> = (0..live).map(|i| ulid_at(now - 40 * DAY_MS, i)).collect();
    sqlx::query(
        "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, done_at, priority)
         SELECT id, 'sync', convert_to('{\"account_id\": 1, \"reason\": \"manual\"}', 'UTF8'),
            CASE WHEN ord % 6 = 0 THEN 'Failed' ELSE 'Pending' END, CASE WHEN ord % 6 = 0 THEN 1 ELSE 0 END, 5,
            to_timestamp(($2 + 86400000::int8)::float8 / 1000), CASE WHEN ord % 6 = 0 THEN to_timestamp(($2 - 40 * 86400000::int8)::float8 / 1000) END, 0
         FROM UNNEST($1::text[]) WITH ORDINALITY AS t (id, ord)",
    )
    .bind(&live_ids)
    .bind(now)
    .execute(pg(&db))
    .await
    .unwrap();
    let old = now - 30 * DAY_MS;
    assert_eq!(census(&db, old).await, (runs as i64, done, live));

    let fleet = Fleet::new(&db.url, &sb, &[("CRON_REFRESH", NEVER), ("CRON_SYNC", NEVER), ("CRON_PRUNE", "*/2 * * * * *")]);
    let mut first = fleet.worker();
    // The pass says how far it got every 100 000 rows: kill it there.
    first.wait_for_line(Duration::from_secs(120), |l| l.contains("pruning") && l.contains("job_runs"));
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(10));
    let cut = census(&db, old).await;

    let mut second = fleet.worker();
    eventually(Duration::from_secs(180), "the next pass deletes the rest", || async { census(&db, old).await.0 == 0 && census(&db, old).await.1 == 0 }).await;
    let after = census(&db, old).await;
    let finished = second.wait_for_line(Duration::from_secs(60), |l| l.contains("firing finished") && l.contains("prune"));
    let unfinished = db.store.cron_runs(jobs::retention::PRUNE, 1000).await.unwrap().iter().filter(|r| r.finished_at.is_none()).count();
    report(
        "pruner_killed_mid_pass",
        "10. The pruner SIGKILLed mid-pass over a large history, then another worker's pass",
        &format!(
            "{runs} old run records, {done} old done jobs, {live} live jobs as old; killed with {} run records and {} done jobs left; \
             the next pass left {} and {}; live jobs {} before, {} after the kill, {} at the end; {unfinished} firing left unfinished by the kill",
            cut.0, cut.1, after.0, after.1, live, cut.2, after.2
        ),
    );
    assert!(cut.0 > 0 && cut.0 < runs as i64, "killed mid-pass: {cut:?}");
    assert_eq!((cut.2, after.2), (live, live), "no live job was pruned");
    assert_eq!((after.0, after.1), (0, 0));
    assert!(finished.contains("firing finished"));
    assert!(unfinished >= 1, "the killed firing stays unfinished (claimed, never ended)");
    drop(second);
}
