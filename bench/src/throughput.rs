//! Throughput: N no-op jobs enqueued (in batches, and one by one) and processed on PostgreSQL at
//! a given concurrency, one worker process's worth. socialsync's side is its production
//! runtime (`worker::run_workers`, default configuration but the sync queue's concurrency):
//! the jobs are syncs of accounts that do not exist, which end at once, so every per-job cost
//! but the platform's is paid — the attempt's run record, its end, the queue's acknowledgement.
//! Baselines in the same run: bare apalis-postgres with a no-op handler, with its default
//! configuration and with the best found here (claim batch 100).

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use apalis::prelude::*;
use apalis_postgres::PostgresStorage;
use jobs::{AccountId, Timestamp, sync};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::Figure;

/// How many jobs of `queue` are `Done`.
pub(crate) async fn done(pool: &PgPool, queue: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM apalis.jobs WHERE job_type = $1 AND status = 'Done'")
        .bind(queue)
        .fetch_one(pool)
        .await
        .expect("the queue is readable")
}

async fn until_done(pool: &PgPool, queue: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60 + n as u64 / 50);
    while done(pool, queue).await < n as i64 {
        assert!(Instant::now() < deadline, "{queue}: {n} jobs not done in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// socialsync: (enqueue time, processing time) for `n` jobs at `concurrency`.
async fn socialsync(n: usize, concurrency: usize, one_by_one: bool) -> (Duration, Duration) {
    let (db, store, pool) = crate::database().await;
    let jobs: Vec<_> = (0..n).map(|i| sync::job(AccountId(10_000_000 + i as i64), sync::SyncReason::Manual, Timestamp::now())).collect();
    let t = Instant::now();
    if one_by_one {
        for j in &jobs {
            store.enqueue(j).await.expect("enqueued");
        }
    } else {
        for chunk in jobs.chunks(1000) {
            store.enqueue_many(chunk).await.expect("enqueued");
        }
    }
    let enqueued = t.elapsed();
    let sandbox = testkit::platform::SandboxServer::start().await;
    let mut cx = testkit::job_context(&store, &sandbox.platforms(Duration::from_secs(5)));
    cx.worker = worker::process_name();
    let mut config = worker::WorkerConfig::default();
    config.sync = worker::QueueConfig { concurrency, batch: concurrency, ..config.sync };
    let shutdown = worker::CancellationToken::new();
    let t = Instant::now();
    let workers = tokio::spawn(worker::run_workers(worker::WorkerSetup { context: cx, config }, shutdown.clone()));
    until_done(&pool, "sync", n).await;
    let processed = t.elapsed();
    shutdown.cancel();
    let _ = workers.await;
    drop(db);
    (enqueued, processed)
}

/// Bare apalis-postgres: (enqueue time, processing time), claim batch `batch` (None: default).
async fn bare(n: usize, concurrency: usize, batch: Option<usize>, one_by_one: bool) -> (Duration, Duration) {
    let (db, _store, pool) = crate::database().await;
    let queue = "bench-bare";
    let mut config = apalis_postgres::Config::default().queue(queue);
    if let Some(b) = batch {
        config = config.batch_size(b);
    }
    let mut storage = PostgresStorage::<Value>::new(&pool).with_config(config);
    let t = Instant::now();
    if one_by_one {
        for i in 0..n {
            storage.push(json!(i)).await.expect("pushed");
        }
    } else {
        for start in (0..n).step_by(1000) {
            storage.push_bulk((start..n.min(start + 1000)).map(|i| json!(i)).collect()).await.expect("pushed");
        }
    }
    let enqueued = t.elapsed();
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = handled.clone();
    let worker = WorkerBuilder::new("bench-bare")
        .backend(storage)
        .concurrency(concurrency)
        .build(move |_: Value| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                Ok::<(), BoxDynError>(())
            }
        });
    let t = Instant::now();
    let running = tokio::spawn(worker.run());
    until_done(&pool, queue, n).await;
    let processed = t.elapsed();
    running.abort();
    drop(db);
    (enqueued, processed)
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

pub async fn run(sizes: &[usize], concurrencies: &[usize]) -> Vec<Figure> {
    let mut figures = vec![];
    for &n in sizes {
        for &c in concurrencies {
            let (enq, ours) = socialsync(n, c, false).await;
            let (bare_enq, bare_default) = bare(n, c, None, false).await;
            let (_, bare_best) = bare(n, c, Some(100), false).await;
            for (baseline_name, baseline) in [("bare apalis-postgres, default configuration", bare_default), ("bare apalis-postgres, claim batch 100", bare_best)] {
                figures.push(Figure {
                    name: format!("throughput, {n} no-op jobs, concurrency {c}"),
                    value: rate(n, ours),
                    baseline_name: baseline_name.into(),
                    baseline: rate(n, baseline),
                    unit: "jobs/s",
                    target: "≥ 20 000 jobs/s".into(),
                });
            }
            if c == concurrencies[0] {
                figures.push(Figure {
                    name: format!("enqueue {n} jobs in batches of 1000"),
                    value: rate(n, enq),
                    baseline_name: "bare apalis-postgres push_bulk".into(),
                    baseline: rate(n, bare_enq),
                    unit: "jobs/s",
                    target: String::new(),
                });
            }
        }
        // One by one: enqueue only (processing is the same as above).
        let m = n.min(20_000);
        let (ours, _) = socialsync_enqueue_only(m).await;
        let (theirs, _) = bare_enqueue_only(m).await;
        figures.push(Figure {
            name: format!("enqueue {m} jobs one by one"),
            value: rate(m, ours),
            baseline_name: "bare apalis-postgres push, one by one".into(),
            baseline: rate(m, theirs),
            unit: "jobs/s",
            target: String::new(),
        });
    }
    figures
}

async fn socialsync_enqueue_only(n: usize) -> (Duration, ()) {
    let (db, store, _pool) = crate::database().await;
    let t = Instant::now();
    for i in 0..n {
        store.enqueue(&sync::job(AccountId(10_000_000 + i as i64), sync::SyncReason::Manual, Timestamp::now())).await.expect("enqueued");
    }
    let d = t.elapsed();
    drop(db);
    (d, ())
}

async fn bare_enqueue_only(n: usize) -> (Duration, ()) {
    let (db, _store, pool) = crate::database().await;
    let mut storage = PostgresStorage::<Value>::new(&pool).with_config(apalis_postgres::Config::default().queue("bench-bare"));
    let t = Instant::now();
    for i in 0..n {
        storage.push(json!(i)).await.expect("pushed");
    }
    let d = t.elapsed();
    drop(db);
    (d, ())
}
