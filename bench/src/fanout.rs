//! Sweep fan-out: the nightly data-sync sweep enqueueing one sync per stale account, with the
//! production page (`jobs::sweeps::CHUNK` accounts a statement). Baseline: the same number of
//! job rows written by one `INSERT … SELECT generate_series`, the floor for N rows in the table.

use std::time::{Duration, Instant};

use crate::Figure;

pub async fn run(accounts: i64) -> Figure {
    let (db, store, pool) = crate::database().await;
    // Active accounts never synced: every one is stale for the sweep.
    sqlx::query(
        "INSERT INTO social_accounts (user_id, platform, platform_user_id, username, status, status_changed_at,
            access_token_enc, access_expires_at, created_at, updated_at)
         SELECT 'user-' || i, CASE WHEN i % 2 = 0 THEN 'instagram' ELSE 'tiktok' END, 'puid-' || i, 'creator' || i,
            'active', 0, 'sealed-placeholder', 4102444800000, 0, 0
         FROM generate_series(1, $1) AS i",
    )
    .bind(accounts)
    .execute(&pool)
    .await
    .expect("accounts inserted");
    // Statistics, as autovacuum would have gathered long before a nightly sweep. Without them
    // the planner guesses a handful of stale accounts and answers each page with a scan of all
    // of them and a sort (22 ms a page at 100 000 accounts, against 0.3 ms along the primary key).
    sqlx::query("ANALYZE social_accounts").execute(&pool).await.expect("analyzed");

    let sandbox = testkit::platform::SandboxServer::start().await;
    let cx = testkit::job_context(&store, &sandbox.platforms(Duration::from_secs(5)));
    let started = Instant::now();
    let created = jobs::sweeps::sync_sweep(&cx, jobs::sweeps::CHUNK).await.expect("the sweep runs");
    let value = started.elapsed();
    assert_eq!(created, accounts as u64, "one sync per stale account");

    sqlx::query("TRUNCATE apalis.jobs").execute(&pool).await.expect("emptied");
    let started = Instant::now();
    sqlx::query(
        "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority, dedup_key)
         SELECT lpad(to_hex(i), 26, '0'), 'sync', convert_to('{\"account_id\":' || i || '}', 'UTF8'), 'Pending', 0, 5,
            now(), 0, 'sync:' || i
         FROM generate_series(1, $1) AS i",
    )
    .bind(accounts)
    .execute(&pool)
    .await
    .expect("rows inserted");
    let baseline = started.elapsed();
    drop(db);
    Figure::time(format!("sweep fan-out, {accounts} syncs enqueued"), value, "one INSERT … SELECT of as many rows", baseline, "100 000 in ≤ 3 s")
}
