//! Several `socialsync worker` processes on one PostgreSQL, against the sandbox: pacing as the
//! platform sees it, and a graceful stop. (Crashes, cron, outages: tests/reliability/.)

mod support;

use std::time::Duration;

use jobs::{
    AccountId, Timestamp,
    sync::{self, SyncReason},
};
use serde_json::json;
use support::{Proc, fleet::{Fleet, connected_accounts, take_turn}};
use testkit::{
    Backend, TestDb, all_accounts, eventually,
    platform::SandboxServer,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pacing_holds_across_processes_and_concurrency() {
    let _turn = take_turn();
    let db = TestDb::new(Backend::Postgres).await;
    // The platform in a process of its own, so the arrival times it logs are not delayed by
    // this test's own work on the same runtime.
    let dir = tempfile::tempdir().unwrap();
    let mut platform = Proc::spawn(dir.path(), &["sandbox", "--port", "0"], &[]);
    let line = platform.wait_for_line(Duration::from_secs(60), |l| l.contains("sandbox platform on http://"));
    let url = line.split("on ").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    let sb = SandboxServer::remote(&url);
    sb.settings(json!({ "posts_per_account": 5 })).await;
    // The margin each slot adds against jitter is 20 ms at any spacing; at 200 ms spacing,
    // when it was 12 ms there, a first start once crossed it.
    let spacing_ms = 500u64;
    let spacing = spacing_ms.to_string();
    let fleet = Fleet::new(
        &db.url,
        &sb,
        &[
            ("PACING_TIKTOK_MS", spacing.as_str()),
            ("SYNC_CONCURRENCY", "8"),
            // PostgreSQL's NOTIFY wakes workers for new jobs; slower polling leaves the two
            // cores to the syncs, whose arrival times this test measures.
            ("WORKER_POLL_MS", "500"),
            ("CRON_REFRESH", "0 0 1 1 *"),
            ("CRON_SYNC", "0 0 1 1 *"),
            // Each start's slot and how late it woke, printed if the spacing is broken.
            ("RUST_LOG", "info,data_sync=debug"),
        ],
    );
    let accounts = connected_accounts(&db, &sb, &fleet.vault, 20).await;
    let workers = vec![fleet.worker(), fleet.worker(), fleet.worker()];
    let log_start = sb.last_request_seq().await;
    for (id, _) in &accounts {
        db.store.enqueue(&sync::job(*id, SyncReason::Manual, Timestamp::now())).await.unwrap();
    }
    let store = db.store.clone();
    let ids: Vec<AccountId> = accounts.iter().map(|a| a.0).collect();
    eventually(Duration::from_secs(120), "every account synced", || {
        let (store, ids) = (store.clone(), ids.clone());
        async move { all_accounts(&store, &ids, |a| a.last_synced_at.is_some()).await }
    })
    .await;
    // A sync starts with its profile read; the platform's log has when each arrived.
    let starts = sb.arrivals_us("user/info", log_start).await;
    if starts.len() != accounts.len() {
        println!("{}", sb.admin_get(&format!("requests?after={log_start}&limit=100000")).await);
    }
    assert_eq!(starts.len(), accounts.len(), "one start per sync");
    // In microseconds: a gap of 499.9 ms is under the spacing, whichever milliseconds its ends
    // fell in.
    let gaps: Vec<i64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    let closest = *gaps.iter().min().unwrap();
    let length = starts.last().unwrap() - starts.first().unwrap();
    let (spacing_us, bound) = (spacing_ms as i64 * 1000, accounts.len() as i64 * spacing_ms as i64 * 1000);
    println!("pacing: {} starts, closest gap {closest} µs, run {length} µs for a bound of {bound} µs", starts.len());
    if closest < spacing_us {
        for (i, w) in workers.iter().enumerate() {
            w.output().lines().filter(|l| l.contains("pacing slot taken") || l.contains("clock")).for_each(|l| println!("worker {i}: {l}"));
        }
        println!("arrivals: {starts:?}");
    }
    // What the platform saw: no two starts closer than the spacing.
    assert!(closest >= spacing_us, "two starts {closest} µs apart: {gaps:?}");
    assert!(length <= bound * 110 / 100, "run took {length} µs, more than 10 % over {bound} µs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_running_jobs_finish() {
    let _turn = take_turn();
    let db = TestDb::new(Backend::Postgres).await;
    let sb = SandboxServer::start().await;
    let fleet = Fleet::new(&db.url, &sb, &[("SYNC_CONCURRENCY", "2"), ("CRON_REFRESH", "0 0 1 1 *"), ("CRON_SYNC", "0 0 1 1 *")]);
    let accounts = connected_accounts(&db, &sb, &fleet.vault, 2).await;
    let mut worker = fleet.worker();
    sb.faults(json!([{ "path_prefix": "tiktok/open/v2/video/list/", "latency_ms": 1500 }])).await;
    for (id, _) in &accounts {
        db.store.enqueue(&sync::job(*id, SyncReason::Manual, Timestamp::now())).await.unwrap();
    }
    let store = db.store.clone();
    eventually(Duration::from_secs(30), "both syncs running", || {
        let store = store.clone();
        async move {
            let jobs::store::Pool::Postgres(p) = store.pool() else { unreachable!() };
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM job_runs WHERE queue = 'sync' AND finished_at IS NULL").fetch_one(p).await.unwrap();
            n == 2
        }
    })
    .await;
    worker.signal("TERM");
    let (status, _) = worker.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status}");
    let ids: Vec<AccountId> = accounts.iter().map(|a| a.0).collect();
    assert!(all_accounts(&db.store, &ids, |a| a.last_synced_at.is_some()).await, "the running syncs finished before the exit");
    assert_eq!(db.store.queue_counts("sync").await.unwrap(), vec![("Done".to_string(), 2)]);
    // apalis' acknowledgement of a success keeps `lock_by`; migration 0005 clears it.
    let jobs::store::Pool::Postgres(p) = db.store.pool() else { unreachable!() };
    let locked: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM apalis.jobs WHERE lock_by IS NOT NULL").fetch_one(p).await.unwrap();
    assert_eq!(locked, 0, "a finished job names no worker");
}

/// Microseconds of real time, as the sandbox logs arrivals.
fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_from_the_command_line_stops_every_worker_and_a_resume_restarts_them() {
    let _turn = take_turn();
    let db = TestDb::new(Backend::Postgres).await;
    let sb = SandboxServer::start().await;
    // Syncs 100 ms apart: a long backlog, and a dozen syncs waiting for their pacing slot at
    // any moment (3 workers × 8), which must not start once the pause is heard either.
    let fleet = Fleet::new(&db.url, &sb, &[("PACING_TIKTOK_MS", "100"), ("WORKER_POLL_MS", "500"), ("CRON_REFRESH", "0 0 1 1 *"), ("CRON_SYNC", "0 0 1 1 *")]);
    let accounts = connected_accounts(&db, &sb, &fleet.vault, 80).await;
    let workers = [fleet.worker(), fleet.worker(), fleet.worker()];
    let from = sb.last_request_seq().await;
    for (id, _) in &accounts {
        db.store.enqueue(&sync::job(*id, SyncReason::Manual, Timestamp::now())).await.unwrap();
    }
    eventually(Duration::from_secs(30), "syncs under way", || async { sb.arrivals_us("user/info", from).await.len() >= 5 }).await;

    let args = ["pause", "sync", "--for", "10m", "--reason", "platform outage drill", "--by", "tester"];
    let (status, out, err) = support::run(fleet.dir.path(), &args, &fleet.env());
    let paused_at = now_us();
    assert!(status.success(), "{err}");
    assert!(out.starts_with("Paused the sync queue by tester at ") && out.contains(": platform outage drill."), "{out}");
    eventually(Duration::from_secs(5), "every worker heard the pause", || async { workers.iter().all(|w| w.output().contains("paused: by tester")) }).await;
    // Watch the platform for 4 s: no sync may start later than 2 s after the command.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let starts = sb.arrivals_us("user/info", from).await;
    let last_after = starts.iter().filter(|t| **t > paused_at).max().map(|t| (t - paused_at) / 1000);
    let ids: Vec<AccountId> = accounts.iter().map(|a| a.0).collect();
    let mut synced = 0;
    for id in &ids {
        synced += usize::from(db.store.account(*id).await.unwrap().unwrap().last_synced_at.is_some());
    }
    println!(
        "pause: {} syncs had started at the command, the last start came {last_after:?} ms after it; {synced} of {} accounts synced while paused",
        starts.iter().filter(|t| **t <= paused_at).count(),
        ids.len()
    );
    assert!(starts.iter().all(|t| *t <= paused_at + 2_000_000), "a sync started more than 2 s after the pause");
    assert!(synced < ids.len(), "work was left to stop");
    let (_, status_out, _) = support::run(fleet.dir.path(), &["status"], &fleet.env());
    assert!(status_out.lines().any(|l| l.starts_with("sync ") && l.ends_with("PAUSED")), "{status_out}");
    assert!(status_out.contains("the sync queue: paused by tester at "), "{status_out}");
    assert_eq!(status_out.matches("(pid ").count(), 3, "the three workers: {status_out}");

    let (status, out, err) = support::run(fleet.dir.path(), &["resume", "sync"], &fleet.env());
    assert!(status.success() && out.starts_with("Resumed the sync queue (paused by tester"), "{out}{err}");
    let store = db.store.clone();
    eventually(Duration::from_secs(60), "every account synced after the resume", || {
        let (store, ids) = (store.clone(), ids.clone());
        async move { all_accounts(&store, &ids, |a| a.last_synced_at.is_some()).await }
    })
    .await;
    assert!(workers.iter().all(|w| w.output().contains("resumed")), "each worker logs the resume");
    let trail = db.store.audit_entries(&jobs::store::AuditFilter::default(), None, 10).await.unwrap();
    let trail: Vec<(&str, &str, &str)> = trail.iter().rev().map(|e| (e.actor.as_str(), e.action.as_str(), e.target.as_str())).collect();
    assert_eq!(trail[0], ("tester", "pause", "queue:sync for 10m: platform outage drill"), "{trail:?}");
    assert!(trail[1].1 == "resume" && trail[1].2 == "queue:sync" && trail[1].0.ends_with(" (cli)"), "{trail:?}");
    // Jobs put back or deferred by the pause spent no attempt: every sync succeeded at its first.
    let jobs::store::Pool::Postgres(p) = db.store.pool() else { unreachable!() };
    let attempts: Vec<i32> = sqlx::query_scalar("SELECT DISTINCT attempts FROM apalis.jobs WHERE job_type = 'sync'").fetch_all(p).await.unwrap();
    assert_eq!(attempts, [1]);

    // One platform's jobs of a queue, from the command line: shown in the status, resumed the
    // way the pause says; a queue that is not per account refuses a platform.
    let env = fleet.env();
    let (status, out, err) = support::run(fleet.dir.path(), &["pause", "refresh", "--platform", "tiktok", "--reason", "token endpoint down", "--by", "tester"], &env);
    assert!(status.success() && out.contains("`socialsync resume refresh --platform tiktok` starts it again"), "{out}{err}");
    let (_, status_out, _) = support::run(fleet.dir.path(), &["status"], &env);
    assert!(status_out.lines().any(|l| l.starts_with("refresh ") && l.ends_with("TIKTOK PAUSED")), "{status_out}");
    assert!(status_out.contains("the refresh queue's tiktok jobs: paused by tester at "), "{status_out}");
    let (status, out, _) = support::run(fleet.dir.path(), &["resume", "refresh", "--platform", "tiktok"], &env);
    assert!(status.success() && out.starts_with("Resumed the refresh queue's tiktok jobs"), "{out}");
    let (status, _, err) = support::run(fleet.dir.path(), &["pause", "notify", "--platform", "tiktok", "--reason", "x"], &env);
    assert!(!status.success() && err.contains("only the sync and refresh queues pause per platform"), "{err}");
}

/// The most sync attempts running at once among those started after `after` (ms), counting
/// every attempt still running when one of them started.
async fn most_at_once_since(db: &TestDb, after: i64) -> usize {
    let jobs::store::Pool::Postgres(p) = db.store.pool() else { unreachable!() };
    let runs: Vec<(i64, Option<i64>)> = sqlx::query_as("SELECT started_at, finished_at FROM job_runs WHERE queue = 'sync'").fetch_all(p).await.unwrap();
    let end = |f: Option<i64>| f.unwrap_or(i64::MAX);
    runs.iter()
        .filter(|(s, _)| *s > after)
        .map(|(s, _)| runs.iter().filter(|(s2, f2)| s2 <= s && end(*f2) > *s).count())
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_s_concurrency_set_live_from_the_command_line_holds_without_a_restart() {
    let _turn = take_turn();
    let db = TestDb::new(Backend::Postgres).await;
    let sb = SandboxServer::start().await;
    let fleet = Fleet::new(&db.url, &sb, &[("SYNC_CONCURRENCY", "8"), ("PACING_TIKTOK_MS", "20"), ("WORKER_POLL_MS", "500"), ("CRON_REFRESH", "0 0 1 1 *"), ("CRON_SYNC", "0 0 1 1 *")]);
    let accounts = connected_accounts(&db, &sb, &fleet.vault, 40).await;
    // Each sync's two reads take 300 ms at the platform: attempts overlap unless held apart.
    sb.faults(json!([{ "path_prefix": "tiktok/open/", "latency_ms": 300 }])).await;
    let worker = fleet.worker();
    let env = fleet.env();
    let synced = |n: usize| {
        let (store, ids) = (db.store.clone(), accounts.iter().map(|a| a.0).collect::<Vec<_>>());
        async move {
            let mut done = 0;
            for id in &ids {
                done += usize::from(store.account(*id).await.unwrap().unwrap().last_synced_at.is_some());
            }
            done >= n
        }
    };

    let (status, out, err) = support::run(fleet.dir.path(), &["concurrency", "sync", "1", "--by", "tester"], &env);
    assert!(status.success() && out.starts_with("The sync queue runs 1 attempts at once per worker process"), "{out}{err}");
    eventually(Duration::from_secs(5), "the worker heard it", || async { worker.output().contains("concurrency set live: 1 attempts") }).await;
    let one_from = Timestamp::now().millis();
    for (id, _) in &accounts {
        db.store.enqueue(&sync::job(*id, SyncReason::Manual, Timestamp::now())).await.unwrap();
    }
    eventually(Duration::from_secs(30), "a few syncs one at a time", || synced(4)).await;
    assert_eq!(most_at_once_since(&db, one_from).await, 1, "one attempt at a time at concurrency 1");

    let (status, _, err) = support::run(fleet.dir.path(), &["concurrency", "sync", "4", "--by", "tester"], &env);
    assert!(status.success(), "{err}");
    eventually(Duration::from_secs(5), "the worker heard it", || async { worker.output().contains("concurrency set live: 4 attempts") }).await;
    let four_from = Timestamp::now().millis();
    eventually(Duration::from_secs(60), "every account synced", || synced(accounts.len())).await;
    let at_four = most_at_once_since(&db, four_from).await;
    println!("concurrency: 1 at once after setting 1; {at_four} at once after setting 4 (8 configured)");
    assert!((2..=4).contains(&at_four), "{at_four} at once after setting 4");

    let (_, status_out, _) = support::run(fleet.dir.path(), &["status"], &env);
    assert!(status_out.contains("  sync: 4, set by tester "), "{status_out}");
    let (status, out, _) = support::run(fleet.dir.path(), &["concurrency", "sync", "--reset"], &env);
    assert!(status.success() && out.contains("back to each process's configured concurrency (was 4 per process, set by tester)"), "{out}");
    eventually(Duration::from_secs(5), "the worker heard the reset", || async { worker.output().contains("concurrency reset to the configured one") }).await;
    let (status, _, err) = support::run(fleet.dir.path(), &["concurrency", "sync", "0"], &env);
    assert!(!status.success() && err.contains("give 1 to 256"), "{err}");
    let jobs::store::Pool::Postgres(p) = db.store.pool() else { unreachable!() };
    let attempts: Vec<i32> = sqlx::query_scalar("SELECT DISTINCT attempts FROM apalis.jobs WHERE job_type = 'sync'").fetch_all(p).await.unwrap();
    assert_eq!(attempts, [1], "held syncs spent no attempt");
}
