//! The platform failing: an outage, twenty refreshes racing for one rotating token, a sync
//! failing half-way through its pages.

use std::time::{Duration, Instant};

use jobs::{
    Timestamp,
    clients::PlatformClient,
    refresh,
    store::NewJob,
    sync::{self, SyncReason},
    vault::Aad,
};
use serde_json::json;
use testkit::{
    Backend, TestDb, eventually,
    platform::{SandboxServer, connected_accounts_with},
};

use crate::{
    NEVER, count, pg, report, setting, unfinished,
    support::{Proc, fleet::{Fleet, explain_stall, take_turn}},
};

// 3 ─────────────────────────────────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_outage() {
    let _turn = take_turn();
    let outage = Duration::from_secs(setting("RELIABILITY_OUTAGE_SECS", 8));
    let db = TestDb::new(Backend::Postgres).await;
    // The platform in a process of its own: the arrival times it logs are the pace measured.
    let dir = tempfile::tempdir().unwrap();
    let mut platform = Proc::spawn(dir.path(), &["sandbox", "--port", "0"], &[]);
    let line = platform.wait_for_line(Duration::from_secs(60), |l| l.contains("sandbox platform on http://"));
    let sb = SandboxServer::remote(line.split("on ").nth(1).unwrap().split_whitespace().next().unwrap());
    let spacing = 100i64;
    let fleet = Fleet::new(
        &db.url,
        &sb,
        &[("PACING_TIKTOK_MS", "100"), ("SYNC_CONCURRENCY", "8"), ("WORKER_POLL_MS", "500"), ("RETRY_CAP_SECS", "4"), ("CRON_REFRESH", NEVER), ("CRON_SYNC", NEVER)],
    );
    let n = 40;
    let accounts = connected_accounts_with(&db.store, &sb, &fleet.vault, n, 1).await;
    let _workers = [fleet.worker(), fleet.worker(), fleet.worker()];
    let log_start = sb.last_request_seq().await;
    sb.faults(json!([{ "path_prefix": "tiktok/", "error_rate": 1.0 }])).await;
    let now = Timestamp::now();
    let jobs: Vec<NewJob> = accounts.iter().flat_map(|(id, _)| [refresh::job(*id, now, now), sync::job(*id, SyncReason::Manual, now)]).collect();
    db.store.enqueue_many(&jobs).await.unwrap();
    // The outage lasts its configured time: waiting it out is the scenario itself.
    tokio::time::sleep(outage).await;
    let marked_during = count(&db, "SELECT COUNT(*) FROM social_accounts WHERE status <> 'active'").await;
    let failed_calls = sb.admin_get(&format!("requests?after={log_start}&limit=100000")).await.as_array().unwrap().iter().filter(|e| e["status"].as_u64() >= Some(500)).count();
    let recovered_seq = sb.last_request_seq().await;
    sb.faults(json!([])).await;
    let recovered = Instant::now();
    eventually(Duration::from_secs(120), "every account synced and refreshed", || async { unfinished(&db, true).await == 0 }).await;
    let drained = recovered.elapsed();
    let marked = count(&db, "SELECT COUNT(*) FROM social_accounts WHERE status <> 'active'").await;

    // Sync starts (profile reads) as the platform saw them. Those the outage failed never
    // reached a handler; the ones after the recovery are the drain.
    let after = sb.arrivals_us("user/info", recovered_seq).await;
    let violations = after.windows(2).filter(|w| w[1] - w[0] < spacing * 1000).count();
    let length = (after.last().unwrap() - after.first().unwrap()) / 1000;
    let share = (after.len() as i64 - 1) * spacing * 100 / length.max(1);
    report(
        "platform_outage",
        "3. Platform outage (every call 5xx), then recovery",
        &format!(
            "{n} accounts, outage {} s with {failed_calls} failed calls; accounts marked for reconnection: {marked_during} during, {marked} after; \
             backlog of {} syncs drained in {:.1} s at {share} % of the {spacing} ms pace, {violations} starts closer than the pace",
            outage.as_secs(),
            after.len(),
            drained.as_secs_f64()
        ),
    );
    assert_eq!((marked_during, marked), (0, 0), "a transient outage marks no account");
    assert!(failed_calls >= n, "the outage was felt");
    assert_eq!(violations, 0, "no two sync starts closer than {spacing} ms");
}

// 4 ─────────────────────────────────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_race() {
    let _turn = take_turn();
    let db = TestDb::new(Backend::Postgres).await;
    let sb = SandboxServer::start().await;
    // A slow token endpoint, so the twenty overlap.
    sb.faults(json!([{ "path_prefix": "tiktok/open/v2/oauth/token/", "latency_ms": 300 }])).await;
    let fleet = Fleet::new(&db.url, &sb, &[("REFRESH_CONCURRENCY", "8"), ("CRON_REFRESH", NEVER), ("CRON_SYNC", NEVER)]);
    let accounts = connected_accounts_with(&db.store, &sb, &fleet.vault, 1, 1).await;
    let (id, puid) = accounts[0].clone();
    let workers = [fleet.worker(), fleet.worker(), fleet.worker()];
    // All three claiming before the twenty arrive: a worker still starting would leave them to
    // the others.
    eventually(Duration::from_secs(60), "three refresh workers registered", || async {
        count(&db, "SELECT COUNT(*) FROM apalis.workers WHERE worker_type = 'refresh'").await >= 3
    })
    .await;
    // Twenty refresh requests at once, as if each had slipped past the queue's dedup: only the
    // account's lease stands between them and a spent refresh token.
    let now = Timestamp::now();
    let racers: Vec<NewJob> = (0..20).map(|_| NewJob { dedup_key: None, ..refresh::job(id, now, now) }).collect();
    db.store.enqueue_many(&racers).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&db, "SELECT COUNT(*) FROM apalis.jobs WHERE job_type = 'refresh' AND status = 'Done'").await < 20 {
        if Instant::now() > deadline {
            explain_stall(&db, &workers).await;
            panic!("not all twenty refresh jobs done");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let calls = sb.counter("tiktok", "oauth/refresh", &puid).await;
    let runners = count(&db, "SELECT COUNT(DISTINCT worker) FROM job_runs WHERE queue = 'refresh'").await;

    // The stored tokens are the live ones: the access token reads the profile, the refresh
    // token renews.
    sb.faults(json!([])).await;
    let a = db.store.account(id).await.unwrap().unwrap();
    let aad = |f| Aad::account(a.platform, &a.platform_user_id, f);
    let access = fleet.vault.open(&aad("access_token"), a.access_token.as_ref().unwrap()).unwrap();
    let refresh_token = fleet.vault.open(&aad("refresh_token"), a.refresh_token.as_ref().unwrap()).unwrap();
    let clients = jobs::clients::Clients::new(&sb.platforms(Duration::from_secs(10)));
    let profile = clients.tiktok.profile(&access, &a.scopes).await;
    let renewed = clients.tiktok.refresh(&access, Some(&refresh_token)).await;
    report(
        "rotation_race",
        "4. 20 concurrent refreshes of one account across 3 workers",
        &format!(
            "{calls} platform refresh call; jobs run by {runners} processes; stored access token reads the profile: {}; stored refresh token renews: {}",
            profile.is_ok(),
            renewed.is_ok()
        ),
    );
    assert_eq!(calls, 1, "exactly one platform refresh call");
    assert!(runners >= 2, "the twenty were spread over several workers");
    assert_eq!(a.status, jobs::AccountStatus::Active);
    profile.unwrap();
    renewed.unwrap();
}

// 8 ─────────────────────────────────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrity() {
    let _turn = take_turn();
    let db = TestDb::new(Backend::Postgres).await;
    let sb = SandboxServer::start().await;
    let fleet = Fleet::new(&db.url, &sb, &[("RETRY_BASE_SECS", "2"), ("CRON_REFRESH", NEVER), ("CRON_SYNC", NEVER)]);
    // 50 posts: three pages of the video list.
    let accounts = connected_accounts_with(&db.store, &sb, &fleet.vault, 1, 50).await;
    let (id, puid) = accounts[0].clone();
    let _worker = fleet.worker();
    db.store.enqueue(&sync::job(id, SyncReason::Manual, Timestamp::now())).await.unwrap();
    eventually(Duration::from_secs(30), "the first sync", || async { db.store.account(id).await.unwrap().unwrap().last_synced_at.is_some() }).await;
    let first = db.store.account(id).await.unwrap().unwrap();
    let snapshots = db.store.snapshots(id, 100).await.unwrap();
    let posts = db.store.posts(id, 1000).await.unwrap();
    let post_rows = |db: &TestDb| {
        let p = pg(db).clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT string_agg(p::text, E'\\n' ORDER BY platform_post_id) FROM posts p WHERE account_id = $1").bind(id.0).fetch_one(&p).await.unwrap()
        }
    };
    let rows_before = post_rows(&db).await;

    // The next sync reads page one, then the platform fails on page two.
    let calls_before = sb.counter("tiktok", "video/list", &puid).await;
    sb.faults(json!([{ "path_prefix": "tiktok/open/v2/video/list/", "error_rate": 1.0, "pass_first": 1 }])).await;
    db.store.enqueue(&sync::job(id, SyncReason::Manual, Timestamp::now())).await.unwrap();
    eventually(Duration::from_secs(30), "the failed sync recorded", || async {
        db.store.account(id).await.unwrap().unwrap().last_sync_error.as_deref() == Some("transient")
    })
    .await;
    let pages_served = sb.counter("tiktok", "video/list", &puid).await - calls_before;
    let failed = db.store.account(id).await.unwrap().unwrap();
    let untouched = db.store.snapshots(id, 100).await.unwrap() == snapshots && post_rows(&db).await == rows_before && failed.last_synced_at == first.last_synced_at;

    // The platform recovers; the retry completes the sync.
    sb.faults(json!([])).await;
    eventually(Duration::from_secs(60), "the retry's sync", || async {
        db.store.account(id).await.unwrap().unwrap().last_synced_at > first.last_synced_at
    })
    .await;
    let done = db.store.account(id).await.unwrap().unwrap();
    let snapshots_after = db.store.snapshots(id, 100).await.unwrap().len();
    let posts_after = db.store.post_count(id).await.unwrap();
    report(
        "integrity",
        "8. A sync failing half-way, then its retry",
        &format!(
            "first sync: {} snapshot, {} posts; the next read page 1 of the posts ({pages_served} page served) and failed on page 2: snapshots, posts and last_synced_at untouched: {untouched}; \
             the retry completed it: {snapshots_after} snapshots, {posts_after} posts, error cleared: {}",
            snapshots.len(),
            posts.len(),
            done.last_sync_error.is_none()
        ),
    );
    assert_eq!((snapshots.len(), posts.len()), (1, 50));
    assert!(pages_served >= 1, "page one was read before the failure");
    assert!(untouched, "the failed sync changed nothing");
    assert_eq!((snapshots_after, posts_after, done.last_sync_error), (2, 50, None));
}
