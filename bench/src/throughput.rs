//! Throughput: N no-op jobs enqueued (in batches, and one by one) and processed on PostgreSQL at
//! a given concurrency, one worker process's worth. socialsync's side is its production
//! runtime (`worker::run_workers`, default configuration but the sync queue's concurrency),
//! twice: with a no-op handler (the runtime alone: claim, run record, acknowledgement), and
//! with the sync handler on accounts that do not exist, which end at once after one account
//! read — every per-job cost of a sync but the platform's.
//! Baselines in the same run: bare apalis-postgres with a no-op handler, with its default
//! configuration and with the best found here (claim batch 100, and no separate write marking a
//! started job `Running`, as socialsync's own configuration); and socialsync's own claim and
//! acknowledgement statements driven alone ([`statements_alone`]), the ceiling of its runtime.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use apalis::prelude::*;
use apalis_postgres::PostgresStorage;
use jobs::{AccountId, Timestamp, store::claims, sync};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::Figure;

/// How many jobs of `queue` are `Done`.
async fn done(pool: &PgPool, queue: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM apalis.jobs WHERE job_type = $1 AND status = 'Done'")
        .bind(queue)
        .fetch_one(pool)
        .await
        .expect("the queue is readable")
}

/// Whether `queue` still has a job that is not `Done`: stops at the first one found, where
/// counting the done ones reads them all (20 ms at 100 000 jobs, taken from the run being
/// timed at every poll).
async fn unfinished(pool: &PgPool, queue: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM apalis.jobs WHERE job_type = $1 AND status IN ('Pending', 'Queued', 'Running', 'Failed'))")
        .bind(queue)
        .fetch_one(pool)
        .await
        .expect("the queue is readable")
}

/// The database's clock now, in microseconds since the epoch.
pub(crate) async fn database_micros(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::int8").fetch_one(pool).await.expect("the clock is readable")
}

/// Waits until the `n` jobs of `queue`, all enqueued, are done, and returns how long after
/// `since` (the database's clock, [`database_micros`]) the last of them was acknowledged.
///
/// The end comes from the rows (`done_at`), not from when the poll saw it, so the poll can be
/// sparse and cheap: a count of the done rows took 20 ms at 100 000 jobs, and counting every
/// 20 ms took most of a core from the run being timed (the throughput at 200 000 jobs fell by
/// half as the table grew); it now asks whether any job is left ([`unfinished`]), every 1/20
/// of the time so far, 20 ms to 1 s.
pub(crate) async fn until_done(pool: &PgPool, queue: &str, n: usize, since: i64) -> Duration {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60 + n as u64 / 50);
    while unfinished(pool, queue).await {
        assert!(Instant::now() < deadline, "{queue}: {n} jobs not done in time");
        tokio::time::sleep((started.elapsed() / 20).clamp(Duration::from_millis(20), Duration::from_secs(1))).await;
    }
    assert_eq!(done(pool, queue).await, n as i64, "{queue}: every job done once");
    let last: i64 = sqlx::query_scalar("SELECT (extract(epoch FROM max(done_at)) * 1000000)::int8 FROM apalis.jobs WHERE job_type = $1 AND status = 'Done'")
        .bind(queue)
        .fetch_one(pool)
        .await
        .expect("the queue is readable");
    Duration::from_micros((last - since).max(0) as u64)
}

/// What socialsync's runtime runs in the throughput benchmark.
#[derive(Clone, Copy, PartialEq)]
enum Work {
    /// A handler that returns at once: the runtime alone (claim, run record, acknowledgement).
    NoOp,
    /// The sync handler, for accounts that do not exist: one account read more per job.
    MissingAccountSyncs,
}

fn no_op<'a>(_: &'static str, _: Value, _: &'a jobs::job::JobContext) -> worker::attempt::Attempt<'a> {
    Box::pin(async { Ok(jobs::job::Outcome::Done(String::new())) })
}

/// Enqueues `n` manual syncs in batches of 1000; returns how long it took.
async fn enqueue_syncs(store: &jobs::Store, n: usize) -> Duration {
    let jobs: Vec<_> = (0..n).map(|i| sync::job(AccountId(10_000_000 + i as i64), sync::SyncReason::Manual, Timestamp::now())).collect();
    let t = Instant::now();
    for chunk in jobs.chunks(1000) {
        store.enqueue_many(chunk).await.expect("enqueued");
    }
    t.elapsed()
}

/// socialsync: (enqueue time, processing time) for `n` jobs at `concurrency`.
async fn socialsync(n: usize, concurrency: usize, work: Work) -> (Duration, Duration) {
    let (db, store, pool) = crate::database().await;
    let enqueued = enqueue_syncs(&store, n).await;
    // The worker gets a pool of its own, of production's size (`DATABASE_MAX_CONNECTIONS`
    // defaults to 10; the test store's pool has 5).
    let mut db_config = testkit::db_config(&db.url);
    db_config.max_connections = 10;
    let store = jobs::store::Store::connect(&db_config).await.expect("the benchmark database accepts connections");
    let sandbox = testkit::platform::SandboxServer::start().await;
    let mut cx = testkit::job_context(&store, &sandbox.platforms(Duration::from_secs(5)));
    cx.worker = worker::process_name();
    let mut config = worker::WorkerConfig::default();
    config.sync = worker::QueueConfig { concurrency, batch: concurrency, ..config.sync };
    if work == Work::NoOp {
        config.handler = no_op;
    }
    let shutdown = worker::CancellationToken::new();
    let since = database_micros(&pool).await;
    let workers = tokio::spawn(worker::run_workers(worker::WorkerSetup { context: cx, config }, shutdown.clone()));
    let processed = until_done(&pool, "sync", n, since).await;
    shutdown.cancel();
    let _ = workers.await;
    drop(db);
    (enqueued, processed)
}

/// Connections and claim size of [`statements_alone`]: of 2–16 connections and 16–128 jobs a
/// claim, where these statements (driven by pgbench) ran fastest here (BENCHMARKS.md).
const ALONE_CONNECTIONS: usize = 8;
const ALONE_BATCH: usize = 64;

/// socialsync's claim and acknowledgement statements alone (the same `claims::claim` and
/// `claims::acknowledge`, each job's run record written whole as a no-op's is), from
/// [`ALONE_CONNECTIONS`] loops that each claim [`ALONE_BATCH`] jobs and acknowledge them at
/// once: no runtime, no handler, no slot or group to wait for. What the database gives these
/// statements on this machine — the ceiling of the worker's no-op rows.
async fn statements_alone(n: usize) -> Duration {
    let (db, store, pool) = crate::database().await;
    enqueue_syncs(&store, n).await;
    let since = database_micros(&pool).await;
    let loops: Vec<_> = (0..ALONE_CONNECTIONS).map(|i| {
        let pool = pool.clone();
        tokio::spawn(async move {
            let worker = format!("bench-alone-{i}");
            claims::register_worker(&pool, &worker, sync::KIND).await.expect("registered");
            loop {
                let claimed = claims::claim(&pool, &worker, sync::KIND, ALONE_BATCH, &[]).await.expect("claimed");
                if claimed.is_empty() {
                    return;
                }
                let at = Timestamp::now();
                let run = |_| Err(claims::WholeRun { account_id: None, worker: worker.clone(), started_at: at });
                let done: Vec<_> = claimed.into_iter().map(|c| claims::Success { job_id: c.id, worker: worker.clone(), attempt: c.attempt, at, run: run(()) }).collect();
                claims::acknowledge(&pool, sync::KIND, &done).await.expect("acknowledged");
            }
        })
    }).collect();
    for l in loops {
        l.await.expect("a claim loop ended");
    }
    let processed = until_done(&pool, sync::KIND, n, since).await;
    drop(db);
    processed
}

/// A configuration of bare apalis-postgres.
#[derive(Clone, Copy)]
struct Bare {
    /// Claim batch (None: the default, 10).
    batch: Option<usize>,
    /// Whether a started job is marked `Running` in a write of its own (the default).
    lock_tasks: bool,
    /// How long the handler takes (zero: it returns at once).
    handler_wait: Duration,
}

const DEFAULT: Bare = Bare { batch: None, lock_tasks: true, handler_wait: Duration::ZERO };
const BEST: Bare = Bare { batch: Some(100), lock_tasks: false, handler_wait: Duration::ZERO };

/// Bare apalis-postgres: (enqueue time, processing time).
async fn bare(n: usize, concurrency: usize, bare: Bare) -> (Duration, Duration) {
    let (db, _store, pool) = crate::database().await;
    let queue = "bench-bare";
    let mut config = apalis_postgres::Config::default().queue(queue).lock_tasks(bare.lock_tasks);
    if let Some(b) = bare.batch {
        config = config.batch_size(b);
    }
    let mut storage = PostgresStorage::<Value>::new(&pool).with_config(config);
    let t = Instant::now();
    for start in (0..n).step_by(1000) {
        storage.push_bulk((start..n.min(start + 1000)).map(|i| json!(i)).collect()).await.expect("pushed");
    }
    let enqueued = t.elapsed();
    let handled = Arc::new(AtomicUsize::new(0));
    let (counter, handler_wait) = (handled.clone(), bare.handler_wait);
    let worker = WorkerBuilder::new("bench-bare")
        .backend(storage)
        .concurrency(concurrency)
        .build(move |_: Value| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                if !handler_wait.is_zero() {
                    tokio::time::sleep(handler_wait).await;
                }
                Ok::<(), BoxDynError>(())
            }
        });
    let since = database_micros(&pool).await;
    let running = tokio::spawn(worker.run());
    let processed = until_done(&pool, queue, n, since).await;
    running.abort();
    drop(db);
    (enqueued, processed)
}

/// socialsync's processing time for `n` no-op jobs at `concurrency`, on a fresh database.
pub(crate) async fn socialsync_no_op(n: usize, concurrency: usize) -> Duration {
    socialsync(n, concurrency, Work::NoOp).await.1
}

pub(crate) fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

/// `bare_handler_wait`: how long bare apalis' handlers take (zero for no-op handlers, as
/// BENCHMARKS.md's table); a few milliseconds show what apalis' fetch loop does with jobs that
/// take time, as socialsync's attempts do (their run records, the account read).
///
/// `processing_only`: socialsync's processing alone, for profiling — no baseline but the
/// statements alone (the other rows say so) and no one-by-one enqueue.
pub async fn run(sizes: &[usize], concurrencies: &[usize], bare_handler_wait: Duration, processing_only: bool) -> Vec<Figure> {
    let mut figures = vec![];
    let alone_name = format!("socialsync's claim and acknowledgement statements alone, {ALONE_CONNECTIONS} connections, {ALONE_BATCH} jobs a claim");
    for &n in sizes {
        let alone = statements_alone(n).await;
        for &c in concurrencies {
            let (enq, ours) = socialsync(n, c, Work::NoOp).await;
            let (_, syncs) = socialsync(n, c, Work::MissingAccountSyncs).await;
            figures.push(Figure {
                name: format!("throughput, {n} no-op jobs, concurrency {c}"),
                value: rate(n, ours),
                baseline_name: alone_name.clone(),
                baseline: rate(n, alone),
                unit: "jobs/s",
                target: "≥ 20 000 jobs/s".into(),
            });
            if processing_only {
                let name = format!("throughput, {n} syncs of missing accounts, concurrency {c}");
                let baseline_name = "not run: --processing-only".into();
                figures.push(Figure { name, value: rate(n, syncs), baseline_name, baseline: f64::NAN, unit: "jobs/s", target: "≥ 20 000 jobs/s".into() });
                continue;
            }
            let wait = |b: Bare| Bare { handler_wait: bare_handler_wait, ..b };
            let (bare_enq, bare_default) = bare(n, c, wait(DEFAULT)).await;
            let (_, bare_best) = bare(n, c, wait(BEST)).await;
            let handlers = if bare_handler_wait.is_zero() { String::new() } else { format!(", handlers taking {} ms", bare_handler_wait.as_millis()) };
            for (what, value) in [("no-op jobs", ours), ("syncs of missing accounts", syncs)] {
                for (baseline_name, baseline) in [
                    (format!("bare apalis-postgres, default configuration{handlers}"), bare_default),
                    (format!("bare apalis-postgres, claim batch 100, no Running write{handlers}"), bare_best),
                ] {
                    figures.push(Figure {
                        name: format!("throughput, {n} {what}, concurrency {c}"),
                        value: rate(n, value),
                        baseline_name,
                        baseline: rate(n, baseline),
                        unit: "jobs/s",
                        target: "≥ 20 000 jobs/s".into(),
                    });
                }
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
        if processing_only {
            continue;
        }
        // One by one: enqueue only (processing is the same as above).
        let (ours, _) = socialsync_enqueue_only(n).await;
        let (theirs, _) = bare_enqueue_only(n).await;
        figures.push(Figure {
            name: format!("enqueue {n} jobs one by one"),
            value: rate(n, ours),
            baseline_name: "bare apalis-postgres push, one by one".into(),
            baseline: rate(n, theirs),
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
