//! Several `socialsync worker` processes on one PostgreSQL, against the sandbox: crash safety
//! under SIGKILL, single-flight refreshes, and one sweep per cron firing.

mod support;

use std::time::Duration;

use jobs::{
    AccountId, Platform, Timestamp, Vault, VaultKey,
    clients::{Clients, PlatformClient, tiktok},
    refresh,
    store::NewAccount,
    sync::{self, SyncReason},
    vault::Aad,
};
use serde_json::json;
use support::Proc;
use testkit::{
    Backend, TestDb, all_accounts, eventually,
    platform::{SandboxServer, param},
};


/// Creates `n` TikTok accounts in the sandbox, connects each (consent + code exchange), and
/// stores them as the connect job would.
async fn connected_accounts(db: &TestDb, sb: &SandboxServer, vault: &Vault, n: usize) -> Vec<(AccountId, String)> {
    let clients = Clients::new(&sb.platforms(Duration::from_secs(10)));
    let mut out = vec![];
    for i in 0..n {
        let acct = sb.admin(reqwest::Method::POST, "accounts", json!({ "platform": "tiktok", "username": format!("fleet{i}"), "posts": 5 })).await;
        let puid = acct["id"].as_str().unwrap().to_owned();
        let verifier = tiktok::pkce_verifier();
        let url = clients.tiktok.authorization_url("s", Some(&tiktok::pkce_challenge(&verifier)));
        let redirect = sb.consent(&url, &puid, true).await;
        let code = jobs::Secret::new(param(&redirect, "code").unwrap());
        let grant = clients.tiktok.exchange_code(&code, Some(&verifier)).await.unwrap();
        let now = Timestamp::now();
        let aad = |f| Aad::account(Platform::Tiktok, &puid, f);
        let a = db
            .store
            .upsert_account(
                &NewAccount {
                    user_id: format!("user{i}"),
                    platform: Platform::Tiktok,
                    platform_user_id: puid.clone(),
                    username: format!("fleet{i}"),
                    display_name: None,
                    scopes: grant.scopes.clone(),
                    access_token: vault.seal(&aad("access_token"), &grant.access_token),
                    refresh_token: grant.refresh_token.as_ref().map(|r| vault.seal(&aad("refresh_token"), r)),
                    access_expires_at: now.plus(grant.expires_in),
                    refresh_expires_at: None,
                    next_refresh_at: None,
                },
                now,
            )
            .await
            .unwrap();
        out.push((a.id, puid));
    }
    out
}

/// Each test here runs several worker processes and a PostgreSQL load on a 2-core machine;
/// they take turns, so one test's processes do not starve another's timing (the pacing test
/// reads real arrival times at the platform).
static TAKE_TURNS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    TAKE_TURNS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Fleet {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    vault: Vault,
}

impl Fleet {
    fn new(db: &TestDb, sb: &SandboxServer, extra: &[(&str, &str)]) -> Fleet {
        let key = VaultKey::generate();
        let vault = Vault::new(VaultKey::parse(key.expose()).unwrap(), vec![]);
        let mut env: Vec<(String, String)> = [
            ("DATABASE_URL", db.url.as_str()),
            ("ENCRYPTION_KEY", key.expose().as_str()),
            ("SANDBOX_URL", sb.url.as_str()),
            ("WORKER_POLL_MS", "100"),
            ("ORPHAN_AFTER_SECS", "2"),
            ("RETRY_BASE_SECS", "1"),
            ("PACING_TIKTOK_MS", "20"),
            ("DATABASE_MAX_CONNECTIONS", "20"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Fleet { dir: tempfile::tempdir().unwrap(), env, vault }
    }

    fn worker(&self) -> Proc {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut p = Proc::spawn(self.dir.path(), &["worker", "--no-migrate"], &env);
        p.wait_for_line(Duration::from_secs(60), |l| l.contains("worker started"));
        p
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_job_loses_nothing_and_refreshes_stay_single() {
    let _turn = take_turn();
    let db = TestDb::new(Backend::Postgres).await;
    let sb = SandboxServer::start().await;
    sb.settings(json!({ "tiktok_rotation": "strict" })).await;
    // No nightly sweep may fire (or be caught up) during this test: it would plan refreshes too.
    let fleet = Fleet::new(&db, &sb, &[("SYNC_CONCURRENCY", "4"), ("CRON_REFRESH", "0 0 1 1 *"), ("CRON_SYNC", "0 0 1 1 *")]);
    let accounts = connected_accounts(&db, &sb, &fleet.vault, 24).await;
    // The victim starts alone, so it is sure to hold running jobs when it is killed.
    let mut workers = vec![fleet.worker()];

    // Every account is due a refresh, requested twice (a planned one and the sweep's): the
    // queue keeps one, the lease keeps it single-flight.
    let now = Timestamp::now();
    for (id, _) in &accounts {
        db.store.enqueue(&refresh::job(*id, now, now)).await.unwrap();
        db.store.enqueue(&refresh::job(*id, now, now)).await.unwrap();
    }
    let store = db.store.clone();
    let ids: Vec<AccountId> = accounts.iter().map(|a| a.0).collect();
    eventually(Duration::from_secs(60), "every account refreshed", || {
        let (store, ids) = (store.clone(), ids.clone());
        async move { all_accounts(&store, &ids, |a| a.last_refreshed_at.is_some()).await }
    })
    .await;

    // Slow syncs, then SIGKILL a worker while it holds running ones.
    sb.faults(json!([{ "path_prefix": "tiktok/open/v2/video/list/", "latency_ms": 1500 }])).await;
    for (id, _) in &accounts {
        db.store.enqueue(&sync::job(*id, SyncReason::Manual, Timestamp::now())).await.unwrap();
    }
    let victim = workers[0].pid().to_string();
    eventually(Duration::from_secs(60), "the victim to run syncs", || {
        let store = store.clone();
        let victim = victim.clone();
        async move {
            let jobs::store::Pool::Postgres(p) = store.pool() else { unreachable!() };
            let running: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM job_runs WHERE queue = 'sync' AND finished_at IS NULL AND worker LIKE '%-' || $1 || '-%'",
            )
            .bind(&victim)
            .fetch_one(p)
            .await
            .unwrap();
            running > 0
        }
    })
    .await;
    workers.push(fleet.worker());
    workers.push(fleet.worker());
    workers[0].signal("KILL");
    workers[0].wait_exit(Duration::from_secs(10));

    let synced = tokio::time::timeout(Duration::from_secs(90), eventually(Duration::from_secs(100), "every account synced", || {
        let (store, ids) = (store.clone(), ids.clone());
        async move { all_accounts(&store, &ids, |a| a.last_synced_at.is_some()).await }
    }))
    .await;
    if synced.is_err() {
        let jobs::store::Pool::Postgres(p) = db.store.pool() else { unreachable!() };
        let rows: Vec<(String, String, String, i32, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT id, job_type, status, attempts, lock_by, last_result::text FROM apalis.jobs WHERE status <> 'Done' ORDER BY job_type",
        )
        .fetch_all(p)
        .await
        .unwrap();
        for r in rows {
            println!("job {r:?}");
        }
        let workers_rows: Vec<(String, String)> = sqlx::query_as("SELECT id, last_seen::text FROM apalis.workers").fetch_all(p).await.unwrap();
        println!("workers {workers_rows:?} now {:?}", sqlx::query_scalar::<_, String>("SELECT now()::text").fetch_one(p).await.unwrap());
        for w in &workers[1..] {
            for l in w.output().lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).take(20) {
                println!("{l}");
            }
        }
        panic!("not every account synced");
    }

    for (id, puid) in &accounts {
        let a = db.store.account(*id).await.unwrap().unwrap();
        assert_eq!(a.status, jobs::AccountStatus::Active, "account {id}");
        let calls = sb.counter("tiktok", "oauth/refresh", puid).await;
        if calls != 1 {
            let jobs::store::Pool::Postgres(p) = db.store.pool() else { unreachable!() };
            let runs: Vec<(String, String, i32, String, i64, Option<i64>, Option<String>, Option<String>)> = sqlx::query_as(
                "SELECT queue, job_id, attempt, worker, started_at, finished_at, outcome, error FROM job_runs WHERE account_id = $1 ORDER BY id",
            )
            .bind(id.0)
            .fetch_all(p)
            .await
            .unwrap();
            for r in runs {
                println!("{r:?}");
            }
        }
        assert_eq!(calls, 1, "exactly one refresh call for account {id}");
    }
    let killed_runs = {
        let jobs::store::Pool::Postgres(p) = db.store.pool() else { unreachable!() };
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM job_runs WHERE queue = 'sync' AND finished_at IS NULL").fetch_one(p).await.unwrap();
        n
    };
    assert!(killed_runs > 0, "the kill interrupted running syncs, which ran again elsewhere");
    println!("SIGKILL interrupted {killed_runs} running syncs; all {} accounts synced, one refresh each", accounts.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_run_each_cron_firing_once() {
    let _turn = take_turn();
    let db = TestDb::new(Backend::Postgres).await;
    let sb = SandboxServer::start().await;
    let fleet = Fleet::new(&db, &sb, &[("CRON_REFRESH", "*/2 * * * * *"), ("CRON_SYNC", "1/2 * * * * *")]);
    let mut workers = vec![fleet.worker(), fleet.worker(), fleet.worker()];
    let start = Timestamp::now();
    let store = db.store.clone();
    eventually(Duration::from_secs(60), "five firings of each schedule", || {
        let store = store.clone();
        async move {
            store.cron_runs(jobs::sweeps::REFRESH_SWEEP, 100).await.unwrap().iter().filter(|r| r.fire_at > start && r.finished_at.is_some()).count() >= 5
                && store.cron_runs(jobs::sweeps::SYNC_SWEEP, 100).await.unwrap().iter().filter(|r| r.fire_at > start && r.finished_at.is_some()).count() >= 5
        }
    })
    .await;
    for w in &mut workers {
        w.signal("TERM");
        assert!(w.wait_exit(Duration::from_secs(30)).0.success());
    }
    // Each process logs the sweeps it ran; together they ran each firing exactly once.
    let mut started: Vec<String> = workers
        .iter()
        .flat_map(|w| w.output().lines().filter(|l| l.contains("sweep started")).map(str::to_owned).collect::<Vec<_>>())
        .map(|l| {
            let field = |name: &str| l.split(&format!("{name}=")).nth(1).unwrap().split_whitespace().next().unwrap().trim_matches('"').to_owned();
            format!("{} {}", field("schedule"), field("fire_at"))
        })
        .collect();
    let total = started.len();
    started.sort();
    started.dedup();
    assert_eq!(started.len(), total, "no firing ran twice");
    let mut rows = 0;
    for s in [jobs::sweeps::REFRESH_SWEEP, jobs::sweeps::SYNC_SWEEP] {
        rows += db.store.cron_runs(s, 1000).await.unwrap().len();
    }
    assert_eq!(total, rows, "every claimed firing ran, once");
    let claimers: std::collections::HashSet<String> = [jobs::sweeps::REFRESH_SWEEP, jobs::sweeps::SYNC_SWEEP]
        .iter()
        .flat_map(|s| futures_lite_block(db.store.cron_runs(s, 1000)))
        .map(|r| r.claimed_by)
        .collect();
    println!("{total} sweeps over {} firings, claimed by {} processes", rows, claimers.len());
}

/// Awaits a future from inside an iterator chain (the test's runtime is multi-threaded).
fn futures_lite_block<T>(f: impl std::future::Future<Output = Result<Vec<T>, jobs::StoreError>>) -> Vec<T> {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f)).unwrap()
}

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
    let spacing_ms = 200u64;
    let fleet = Fleet::new(
        &db,
        &sb,
        &[
            ("PACING_TIKTOK_MS", "200"),
            ("SYNC_CONCURRENCY", "8"),
            // PostgreSQL's NOTIFY wakes workers for new jobs; slower polling leaves the two
            // cores to the syncs, whose arrival times this test measures.
            ("WORKER_POLL_MS", "500"),
            ("CRON_REFRESH", "0 0 1 1 *"),
            ("CRON_SYNC", "0 0 1 1 *"),
        ],
    );
    let accounts = connected_accounts(&db, &sb, &fleet.vault, 30).await;
    let _workers = vec![fleet.worker(), fleet.worker(), fleet.worker()];
    let log_start = sb.admin_get("requests?limit=100000").await.as_array().unwrap().last().map_or(0, |e| e["seq"].as_u64().unwrap());
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
    let log = sb.admin_get(&format!("requests?after={log_start}&limit=100000")).await;
    let mut starts: Vec<i64> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["endpoint"] == "user/info")
        .map(|e| e["real_ms"].as_i64().unwrap())
        .collect();
    starts.sort();
    if starts.len() != accounts.len() {
        for e in log.as_array().unwrap().iter().filter(|e| e["endpoint"] == "user/info") {
            println!("{e}");
        }
    }
    assert_eq!(starts.len(), accounts.len(), "one start per sync");
    let gaps: Vec<i64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    let closest = *gaps.iter().min().unwrap();
    let length = starts.last().unwrap() - starts.first().unwrap();
    let bound = accounts.len() as i64 * spacing_ms as i64;
    println!("pacing: {} starts, closest gap {closest} ms, run {length} ms for a bound of {bound} ms", starts.len());
    // What the platform saw: no two starts closer than the spacing.
    assert!(closest >= spacing_ms as i64, "two starts {closest} ms apart: {gaps:?}");
    assert!(length <= bound * 110 / 100, "run took {length} ms, more than 10 % over {bound} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_outage_changes_no_status_and_every_sync_succeeds_after() {
    let _turn = take_turn();
    let db = TestDb::new(Backend::Postgres).await;
    let sb = SandboxServer::start().await;
    let fleet = Fleet::new(&db, &sb, &[("CRON_REFRESH", "0 0 1 1 *"), ("CRON_SYNC", "0 0 1 1 *")]);
    let accounts = connected_accounts(&db, &sb, &fleet.vault, 12).await;
    let _workers = vec![fleet.worker(), fleet.worker()];
    sb.faults(json!([{ "path_prefix": "tiktok/", "error_rate": 1.0 }])).await;
    let now = Timestamp::now();
    for (id, _) in &accounts {
        db.store.enqueue(&sync::job(*id, SyncReason::Manual, now)).await.unwrap();
        db.store.enqueue(&refresh::job(*id, now, now)).await.unwrap();
    }
    // Wait until every account has failed at least once, then end the outage.
    let store = db.store.clone();
    let ids: Vec<AccountId> = accounts.iter().map(|a| a.0).collect();
    eventually(Duration::from_secs(60), "a failure on every account", || {
        let (store, ids) = (store.clone(), ids.clone());
        async move { all_accounts(&store, &ids, |a| a.last_sync_error.is_some() && a.last_refresh_error.is_some()).await }
    })
    .await;
    for id in &ids {
        assert_eq!(db.store.account(*id).await.unwrap().unwrap().status, jobs::AccountStatus::Active, "no status change during the outage");
    }
    sb.faults(json!([])).await;
    eventually(Duration::from_secs(90), "every account synced and refreshed", || {
        let (store, ids) = (store.clone(), ids.clone());
        async move { all_accounts(&store, &ids, |a| a.last_synced_at.is_some() && a.last_refreshed_at.is_some()).await }
    })
    .await;
    for id in &ids {
        let a = db.store.account(*id).await.unwrap().unwrap();
        assert_eq!(a.status, jobs::AccountStatus::Active);
        assert_eq!(a.last_sync_error, None, "the last sync succeeded");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_missed_while_every_worker_was_down_is_caught_up_once() {
    let _turn = take_turn();
    let db = TestDb::new(Backend::Postgres).await;
    let sb = SandboxServer::start().await;
    // A daily schedule whose latest firing was an hour ago, when no worker ran.
    let missed = chrono::Utc::now() - chrono::Duration::hours(1);
    let daily = format!("{} {} * * *", chrono::Timelike::minute(&missed), chrono::Timelike::hour(&missed));
    let fleet = Fleet::new(&db, &sb, &[("CRON_SYNC", daily.as_str()), ("CRON_REFRESH", "0 0 1 1 *")]);
    connected_accounts(&db, &sb, &fleet.vault, 3).await;

    let first = fleet.worker();
    let store = db.store.clone();
    eventually(Duration::from_secs(30), "the catch-up sweep", || {
        let store = store.clone();
        async move { store.cron_runs(jobs::sweeps::SYNC_SWEEP, 10).await.unwrap().iter().any(|r| r.finished_at.is_some()) }
    })
    .await;
    let runs = db.store.cron_runs(jobs::sweeps::SYNC_SWEEP, 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].jobs_enqueued, Some(3), "the stale accounts were queued");
    let fired = runs[0].fire_at.to_datetime();
    assert!((fired - missed).num_seconds().abs() < 61, "the missed firing, {fired}, was run");

    // More workers starting later find the firing done.
    let mut more = vec![fleet.worker(), fleet.worker()];
    for w in &mut more {
        w.wait_for_line(Duration::from_secs(30), |l| l.contains("worker started"));
    }
    drop(first);
    assert_eq!(db.store.cron_runs(jobs::sweeps::SYNC_SWEEP, 10).await.unwrap().len(), 1, "caught up once");
    let started: usize = more.iter().map(|w| w.output().matches("sweep started").count()).sum();
    assert_eq!(started, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_running_jobs_finish() {
    let _turn = take_turn();
    let db = TestDb::new(Backend::Postgres).await;
    let sb = SandboxServer::start().await;
    let fleet = Fleet::new(&db, &sb, &[("SYNC_CONCURRENCY", "2"), ("CRON_REFRESH", "0 0 1 1 *"), ("CRON_SYNC", "0 0 1 1 *")]);
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
}
