//! Pick-up latency with idle workers: from just before a job is enqueued to the start of its
//! handler (its `job_runs.started_at`; milliseconds, the resolution stored), one job at a time,
//! with socialsync's production worker configuration. The jobs are syncs of accounts that do
//! not exist, which end at once. Baselines: a LISTEN/NOTIFY round trip on the same database,
//! the floor for any wake-up through PostgreSQL; and the same notification sent by the commit
//! of a one-row insert, which waits for its WAL flush as every durable enqueue does — the floor
//! for any PostgreSQL queue that does not lose an accepted job.

use std::time::{Duration, Instant};

use jobs::{AccountId, Timestamp, sync};
use sqlx::postgres::PgListener;

use crate::{Figure, percentile};

pub async fn run(jobs: usize) -> Vec<Figure> {
    let (db, store, pool) = crate::database().await;
    let sandbox = testkit::platform::SandboxServer::start().await;
    let mut cx = testkit::job_context(&store, &sandbox.platforms(Duration::from_secs(5)));
    cx.worker = worker::process_name();
    let shutdown = worker::CancellationToken::new();
    let workers = tokio::spawn(worker::run_workers(
        worker::WorkerSetup { context: cx, config: worker::WorkerConfig::default() },
        shutdown.clone(),
    ));
    // Let the workers register and go idle.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut latencies = Vec::with_capacity(jobs);
    for i in 0..jobs {
        let before = Timestamp::now();
        let id = store.enqueue(&sync::job(AccountId(1_000_000 + i as i64), sync::SyncReason::Manual, before)).await.expect("enqueued").id;
        let deadline = Instant::now() + Duration::from_secs(10);
        let started = loop {
            if let Some(run) = store.job_runs(&id).await.expect("job_runs read").first() {
                break run.started_at;
            }
            assert!(Instant::now() < deadline, "job {id} was not picked up within 10 s");
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        latencies.push(Duration::from_millis((started.millis() - before.millis()).max(0) as u64));
        // Idle again before the next one.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    let _ = workers.await;

    let mut listener = PgListener::connect_with(&pool).await.expect("a listener");
    listener.listen("socialsync_bench").await.expect("listening");
    let mut rounds = notify_rounds(&pool, &mut listener, "SELECT pg_notify('socialsync_bench', 'x')", jobs).await;
    sqlx::query("CREATE TABLE pickup_floor (x int)").execute(&pool).await.expect("a table");
    let durable = "WITH i AS (INSERT INTO pickup_floor VALUES (1)) SELECT pg_notify('socialsync_bench', 'x')";
    let mut durable = notify_rounds(&pool, &mut listener, durable, jobs).await;
    drop(db);
    let (p50, p99) = (percentile(&mut latencies, 50.0), percentile(&mut latencies, 99.0));
    let (b50, b99) = (percentile(&mut rounds, 50.0), percentile(&mut rounds, 99.0));
    let (d50, d99) = (percentile(&mut durable, 50.0), percentile(&mut durable, 99.0));
    let name = |p| format!("pick-up latency {p} ({jobs} jobs, idle workers)");
    vec![
        Figure::time(name("p50"), p50, "LISTEN/NOTIFY round trip p50", b50, "≤ 5 ms"),
        Figure::time(name("p50"), p50, "a durable one-row insert's commit + its NOTIFY round trip, p50", d50, "≤ 5 ms"),
        Figure::time(name("p99"), p99, "LISTEN/NOTIFY round trip p99", b99, "≤ 25 ms"),
        Figure::time(name("p99"), p99, "a durable one-row insert's commit + its NOTIFY round trip, p99", d99, "≤ 25 ms"),
    ]
}

/// `n` times: `sql` (which notifies `socialsync_bench`) until `listener` has the notification.
async fn notify_rounds(pool: &sqlx::PgPool, listener: &mut PgListener, sql: &'static str, n: usize) -> Vec<Duration> {
    let mut rounds = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        sqlx::query(sql).execute(pool).await.expect("notified");
        listener.recv().await.expect("the notification arrives");
        rounds.push(t.elapsed());
    }
    rounds
}
