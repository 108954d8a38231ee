//! Pick-up latency with idle workers: from just before a job is enqueued to the start of its
//! handler (its `job_runs.started_at`; milliseconds, the resolution stored), one job at a time,
//! with socialsync's production worker configuration. The jobs are syncs of accounts that do
//! not exist, which end at once. Baseline: a LISTEN/NOTIFY round trip on the same database,
//! the floor for any wake-up through PostgreSQL.

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
    let mut rounds = Vec::with_capacity(jobs);
    for _ in 0..jobs {
        let t = Instant::now();
        sqlx::query("SELECT pg_notify('socialsync_bench', 'x')").execute(&pool).await.expect("notified");
        listener.recv().await.expect("the notification arrives");
        rounds.push(t.elapsed());
    }
    drop(db);
    let (p50, p99) = (percentile(&mut latencies, 50.0), percentile(&mut latencies, 99.0));
    let (b50, b99) = (percentile(&mut rounds, 50.0), percentile(&mut rounds, 99.0));
    vec![
        Figure::time(format!("pick-up latency p50 ({jobs} jobs, idle workers)"), p50, "LISTEN/NOTIFY round trip p50", b50, "≤ 5 ms"),
        Figure::time(format!("pick-up latency p99 ({jobs} jobs, idle workers)"), p99, "LISTEN/NOTIFY round trip p99", b99, "≤ 25 ms"),
    ]
}
