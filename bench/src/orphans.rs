//! Orphan recovery: a `socialsync worker` running N syncs (their video lists hang at the
//! sandbox) is SIGKILLed; measured is the time from the kill until every one of those jobs has
//! started again on a second worker — production settings (`ORPHAN_AFTER_SECS` 5, polling every
//! 500 ms), TikTok paced at 10 ms. Baseline: the same worker starting N fresh syncs, the floor
//! of starting that many at that pace.

use std::time::{Duration, Instant};

use jobs::{AccountId, Timestamp, Vault, VaultKey, store::Pool, sync};
use serde_json::json;

use crate::{Figure, memory::spawn};

/// The sync jobs among `ids` with a run started by a process other than `pid`.
async fn restarted_elsewhere(pool: &sqlx::PgPool, ids: &[String], pid: u32) -> i64 {
    sqlx::query_scalar("SELECT COUNT(DISTINCT job_id) FROM job_runs WHERE job_id = ANY($1) AND worker NOT LIKE '%-' || $2 || '-%'")
        .bind(ids)
        .bind(pid.to_string())
        .fetch_one(pool)
        .await
        .expect("job_runs readable")
}

async fn running_on(pool: &sqlx::PgPool, pid: u32) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM job_runs WHERE queue = 'sync' AND finished_at IS NULL AND worker LIKE '%-' || $1 || '-%'")
        .bind(pid.to_string())
        .fetch_one(pool)
        .await
        .expect("job_runs readable")
}

async fn enqueue(store: &jobs::Store, accounts: &[(AccountId, String)]) -> Vec<String> {
    let mut ids = vec![];
    for (id, _) in accounts {
        ids.push(store.enqueue(&sync::job(*id, sync::SyncReason::Manual, Timestamp::now())).await.expect("enqueued").id);
    }
    ids
}

async fn until(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn run(n: usize) -> Figure {
    let (db, store, _pool) = crate::database().await;
    let Pool::Postgres(pool) = store.pool().clone() else { unreachable!("the benchmarks run on PostgreSQL") };
    let sb = testkit::platform::SandboxServer::start().await;
    sb.settings(json!({ "tiktok_requests_per_minute": 1_000_000 })).await;
    let key = VaultKey::generate();
    let vault = Vault::new(VaultKey::parse(key.expose()).expect("a fresh key parses"), vec![]);
    let accounts = testkit::platform::connected_accounts_with(&store, &sb, &vault, n, 1).await;
    let concurrency = n.to_string();
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("ENCRYPTION_KEY", key.expose().as_str()),
        ("SANDBOX", "true"),
        ("SANDBOX_URL", sb.url.as_str()),
        ("SYNC_CONCURRENCY", concurrency.as_str()),
        ("PACING_TIKTOK_MS", "10"),
        ("CRON_REFRESH", "0 0 1 1 *"),
        ("CRON_SYNC", "0 0 1 1 *"),
    ];
    let victim = spawn(&["worker", "--no-migrate"], &env);
    let victim_pid = victim.0.id();
    sb.faults(json!([{ "path_prefix": "tiktok/open/v2/video/list/", "hang": true }])).await;
    let held = enqueue(&store, &accounts).await;
    until("the victim to run every sync", Duration::from_secs(60), async || running_on(&pool, victim_pid).await == n as i64).await;
    let survivor = spawn(&["worker", "--no-migrate"], &env);
    until("the second worker's heartbeat", Duration::from_secs(60), async || {
        store.worker_processes(Timestamp::now()).await.expect("readable").len() == 2
    })
    .await;
    sb.faults(json!([])).await;

    let mut victim = victim;
    victim.0.kill().expect("SIGKILL");
    let killed = Instant::now();
    let _ = victim.0.wait();
    until("every held job to run elsewhere", Duration::from_secs(120), async || restarted_elsewhere(&pool, &held, victim_pid).await == n as i64).await;
    let recovered = killed.elapsed();

    // Baseline: the survivor starting as many fresh syncs.
    until("the recovered syncs to end", Duration::from_secs(120), async || {
        store.queue_counts("sync").await.expect("readable").iter().all(|(status, _)| status == "Done")
    })
    .await;
    let fresh_start = Instant::now();
    let fresh = enqueue(&store, &accounts).await;
    until("the fresh syncs to start", Duration::from_secs(120), async || restarted_elsewhere(&pool, &fresh, victim_pid).await == n as i64).await;
    let floor = fresh_start.elapsed();
    drop(survivor);
    drop(db);
    Figure::time(
        format!("orphan recovery: SIGKILL a worker running {n} syncs → all running again elsewhere"),
        recovered,
        "a worker starting as many fresh syncs",
        floor,
        "≤ 15 s",
    )
}
