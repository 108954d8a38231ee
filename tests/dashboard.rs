//! The ops dashboard, `/docs` and `/demo` in a real browser: Debian's chromium, driven through
//! chromedriver (WebDriver, with fantoccini) or run headless on one page (`--dump-dom`, with
//! virtual time for pages left open), against the real `socialsync up` on a fresh PostgreSQL
//! database. Each WebDriver test saves a screenshot under `target/dashboard-screenshots/`.
//!
//! Needs `chromium` and `chromedriver` (`apt-get install chromium chromium-driver`; `.ci/run`
//! installs them).

mod support;

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator};
use jobs::{
    AccountId, Platform, Store, Timestamp,
    store::{NewAccount, NewJob},
    sync::{self, SyncReason},
};
use serde_json::json;
use support::{Proc, run, run_with_input};
use testkit::{Backend, TestDb};

const PASSWORD: &str = "correct horse battery staple";

/// chromedriver and a browser session through it; the driver is killed on drop.
struct Browser {
    driver: Child,
    client: Option<Client>,
}

impl Browser {
    async fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(binary("chromedriver", &["/usr/bin/chromedriver"]))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (apt-get install chromium chromium-driver; .ci/run installs them)");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": binary("chromium", &["/usr/bin/chromium", "/usr/bin/chromium-browser"]),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut browser = Browser { driver, client: None };
        loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector).capabilities(caps.clone()).connect(&url).await {
                Ok(c) => {
                    browser.client = Some(c);
                    return browser;
                }
                Err(e) => {
                    assert!(Instant::now() < deadline, "no browser session through chromedriver: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn c(&self) -> &Client {
        self.client.as_ref().expect("connected")
    }

    /// Saves what the browser shows to `target/dashboard-screenshots/{name}.png`.
    async fn screenshot(&self, name: &str) {
        let png = self.c().screenshot().await.expect("a screenshot");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dashboard-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    async fn text(&self, css: &str) -> String {
        self.c().find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css} is on the page: {e}")).text().await.unwrap()
    }

    /// Waits until the text of `css` satisfies `pred` (reloading the page first when `reload`).
    /// After a click that submits a form, this is how a test waits for the next page: a click
    /// may return before the navigation it starts has finished.
    async fn wait_text(&self, css: &str, reload: bool, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if reload {
                self.c().refresh().await.unwrap();
            }
            let text = match self.c().find(Locator::Css(css)).await {
                Ok(e) => e.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if pred(&text) {
                return text;
            }
            assert!(Instant::now() < deadline, "{css} never satisfied the condition; last text {text:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn sign_in(&self, base: &str, password: &str) {
        let c = self.c();
        c.goto(&format!("{base}/dashboard/login")).await.unwrap();
        c.find(Locator::Css("input[name=password]")).await.unwrap().send_keys(password).await.unwrap();
        c.find(Locator::Css("form.login button")).await.unwrap().click().await.unwrap();
    }

    async fn close(mut self) {
        if let Some(c) = self.client.take() {
            let _ = c.close().await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn binary(name: &str, candidates: &[&str]) -> String {
    candidates.iter().find(|p| std::path::Path::new(p).exists()).map_or_else(|| name.to_owned(), |p| (*p).to_owned())
}

/// One page in headless chromium, its timers run for `virtual_ms` of virtual time (network
/// fetches are real and pause the clock): the DOM it ends with, and what it logged to its console.
fn headless(url: &str, virtual_ms: u64) -> (String, String) {
    let out = Command::new(binary("chromium", &["/usr/bin/chromium", "/usr/bin/chromium-browser"]))
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--enable-logging=stderr", "--v=0"])
        .arg(format!("--virtual-time-budget={virtual_ms}"))
        .args(["--dump-dom", url])
        .output()
        .expect("chromium runs (apt-get install chromium; .ci/run installs it)");
    assert!(out.status.success(), "chromium --dump-dom {url}: {}", String::from_utf8_lossy(&out.stderr));
    let console = String::from_utf8_lossy(&out.stderr).lines().filter(|l| l.contains("CONSOLE")).collect::<Vec<_>>().join("\n");
    (String::from_utf8_lossy(&out.stdout).into_owned(), console)
}

/// `socialsync up` on a fresh PostgreSQL database, with fresh keys and `OPS_PASSWORD`.
struct System {
    _dir: tempfile::TempDir,
    db: TestDb,
    up: Proc,
    url: String,
    key: String,
}

impl System {
    async fn start() -> System {
        System::start_with(false, &[]).await
    }

    /// As in development: without `JWT_SECRET`, so `/demo` signs its visitor in.
    async fn start_dev() -> System {
        System::start_with(true, &[]).await
    }

    async fn start_with(dev: bool, extra: &[(&str, &str)]) -> System {
        let dir = tempfile::tempdir().unwrap();
        let db = TestDb::new(Backend::Postgres).await;
        let (status, keys, _) = run(dir.path(), &["keys", "generate"], &[]);
        assert!(status.success());
        let keys: Vec<(String, String)> = keys.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        let key = keys.iter().find(|(k, _)| k == "ENCRYPTION_KEY").unwrap().1.clone();
        let mut env: Vec<(&str, &str)> = keys.iter().filter(|(k, _)| !dev || k != "JWT_SECRET").map(|(k, v)| (k.as_str(), v.as_str())).collect();
        env.extend([("DATABASE_URL", db.url.as_str()), ("OPS_PASSWORD", PASSWORD), ("PACING_INSTAGRAM_MS", "50"), ("PACING_TIKTOK_MS", "50")]);
        env.extend(extra.iter().copied());
        // The pruner fires only when a test runs it by hand (once a year otherwise).
        env.push(("CRON_PRUNE", "0 0 1 1 *"));
        let mut up = Proc::spawn(dir.path(), &["up"], &env);
        let url = up.wait_for_url();
        // Start-up catches up today's missed sweeps; let them finish before the test adds data.
        up.wait_for_line(Duration::from_secs(30), |l| l.contains("firing finished") && l.contains("data_sync"));
        System { _dir: dir, db, up, url, key }
    }

    async fn store(&self) -> Store {
        Store::connect(&testkit::db_config(&self.db.url)).await.unwrap()
    }
}

/// A sync of an account that does not exist: it runs at once and succeeds (skipped).
fn sync_of_nobody(n: i64, run_at: Timestamp) -> NewJob {
    sync::job(AccountId(1_000_000 + n), SyncReason::Manual, run_at)
}

/// Makes a job dead: failed on its last attempt with `error`.
async fn kill(db: &TestDb, id: &str, error: &str) {
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    sqlx::query("UPDATE apalis.jobs SET status = 'Failed', attempts = max_attempts, last_result = jsonb_build_object('Err', $2::text) WHERE id = $1")
        .bind(id)
        .bind(error)
        .execute(&pool)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_refuses_a_wrong_password_and_takes_the_right_one() {
    let sys = System::start().await;
    let b = Browser::start().await;
    let c = b.c();
    c.goto(&format!("{}/dashboard/jobs", sys.url)).await.unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/dashboard/login", "pages need a session");

    b.sign_in(&sys.url, "not the password").await;
    b.wait_text("p.error", false, Duration::from_secs(10), |t| t == "Wrong password.").await;
    assert_eq!(c.current_url().await.unwrap().path(), "/dashboard/login");
    assert!(sys.up.output().contains("failed dashboard sign-in"), "logged");

    b.sign_in(&sys.url, PASSWORD).await;
    b.wait_text("main h1", false, Duration::from_secs(10), |t| t == "Overview").await;
    assert_eq!(c.current_url().await.unwrap().path(), "/dashboard/");
    b.screenshot("sign-in").await;

    // Signing out ends the session: the pages ask for the password again.
    c.find(Locator::Css("form.logout button")).await.unwrap().click().await.unwrap();
    b.wait_text("form.login h1", false, Duration::from_secs(10), |t| t == "socialsync ops").await;
    c.goto(&format!("{}/dashboard/", sys.url)).await.unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/dashboard/login");
    assert!(!sys.up.output().contains(PASSWORD), "the password never reaches the log");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_counts_jobs_live_while_they_run() {
    let sys = System::start().await;
    let b = Browser::start().await;
    b.sign_in(&sys.url, PASSWORD).await;
    b.wait_text("main h1", false, Duration::from_secs(10), |t| t == "Overview").await;
    assert_eq!(b.text(r#"[data-cell="sync:done"]"#).await, "0");
    // Marks this page: a reload would lose the mark.
    b.c().execute("window.stillHere = true; return true;", vec![]).await.unwrap();

    let store = sys.store().await;
    let jobs: Vec<NewJob> = (0..20).map(|n| sync_of_nobody(n, Timestamp::now())).collect();
    assert_eq!(store.enqueue_many(&jobs).await.unwrap(), 20);
    b.wait_text(r#"[data-cell="sync:done"]"#, false, Duration::from_secs(60), |t| t == "20").await;
    let same_page = b.c().execute("return window.stillHere === true;", vec![]).await.unwrap();
    assert_eq!(same_page, json!(true), "the numbers changed without a reload");
    let bars = b.c().find_all(Locator::Css("#throughput rect.ok")).await.unwrap();
    assert!(!bars.is_empty(), "the throughput chart shows the finished attempts");

    b.c().find(Locator::Css("#live-toggle")).await.unwrap().click().await.unwrap();
    assert_eq!(b.text("#live-status").await, "Paused");
    b.screenshot("overview-live").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_filter_and_a_dead_job_retried_runs_again() {
    let sys = System::start().await;
    let store = sys.store().await;
    let later = Timestamp::now().plus(Duration::from_secs(3600));
    // Two dead syncs (parked in the future first, so no worker takes them), three scheduled.
    let dead_a = store.enqueue(&sync_of_nobody(1, later)).await.unwrap().id;
    let dead_b = store.enqueue(&sync_of_nobody(2, later)).await.unwrap().id;
    kill(&sys.db, &dead_a, "transient: instagram answered 503").await;
    kill(&sys.db, &dead_b, "transient: timed out").await;
    for n in 3..6 {
        store.enqueue(&sync_of_nobody(n, later)).await.unwrap();
    }

    let b = Browser::start().await;
    let c = b.c();
    b.sign_in(&sys.url, PASSWORD).await;
    b.wait_text("main h1", false, Duration::from_secs(10), |t| t == "Overview").await;
    c.goto(&format!("{}/dashboard/jobs", sys.url)).await.unwrap();
    assert_eq!(c.find_all(Locator::Css("table.jobs tbody tr[data-state]")).await.unwrap().len(), 5);

    // Filter by state through the form, then narrow by error text.
    c.find(Locator::Css("#job-filter select[name=state] option[value=dead]")).await.unwrap().click().await.unwrap();
    c.find(Locator::Css("#job-filter button[type=submit]")).await.unwrap().click().await.unwrap();
    // The filtered page: both dead jobs listed, none of the scheduled ones.
    b.wait_text("table.jobs tbody", false, Duration::from_secs(10), |t| !t.contains("scheduled") && t.contains(&dead_a)).await;
    let rows = c.find_all(Locator::Css("table.jobs tbody tr[data-state]")).await.unwrap();
    assert_eq!(rows.len(), 2, "two dead jobs");
    for r in &rows {
        assert_eq!(r.attr("data-state").await.unwrap().as_deref(), Some("dead"));
    }
    c.find(Locator::Css("#job-filter input[name=error]")).await.unwrap().send_keys("503").await.unwrap();
    c.find(Locator::Css("#job-filter button[type=submit]")).await.unwrap().click().await.unwrap();
    b.wait_text("table.jobs tbody", false, Duration::from_secs(10), |t| !t.contains(&dead_b)).await;
    let rows = c.find_all(Locator::Css("table.jobs tbody tr[data-state]")).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(b.text("table.jobs tbody").await.contains(&dead_a));

    // Its detail page, and retry: it runs again, and this time it succeeds.
    c.find(Locator::Css(&format!("a[href='/dashboard/jobs/{dead_a}']"))).await.unwrap().click().await.unwrap();
    b.wait_text("main h1", false, Duration::from_secs(10), |t| t.contains(&dead_a)).await;
    c.find(Locator::Css("form.actions button[value=retry]")).await.unwrap().click().await.unwrap();
    b.wait_text("p.notice", false, Duration::from_secs(10), |t| t == "Retried 1 job.").await;
    b.wait_text("dl.facts dd span.state", true, Duration::from_secs(60), |t| t == "done").await;
    assert!(b.text("table.runs").await.contains("succeeded"), "the attempt is listed");
    assert!(sys.up.output().contains("jobs action"), "the action is logged");
    b.screenshot("job-retried").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_now_fires_the_sync_sweep_and_lists_the_firing() {
    let sys = System::start().await;
    let store = sys.store().await;
    // Three active accounts never synced: what the data-sync sweep picks up.
    let vault = jobs::Vault::new(jobs::VaultKey::parse(&sys.key).unwrap(), vec![]);
    for n in 0..3 {
        let pid = format!("17841400000{n}");
        let aad = jobs::Aad::account(Platform::Instagram, &pid, "access_token");
        let account = NewAccount {
            user_id: format!("user-{n}"),
            platform: Platform::Instagram,
            platform_user_id: pid.clone(),
            username: format!("creator{n}"),
            display_name: None,
            scopes: String::new(),
            access_token: vault.seal(&aad, &jobs::Secret::from("not-a-real-token")),
            refresh_token: None,
            access_expires_at: Timestamp::now().plus(Duration::from_secs(30 * 86_400)),
            refresh_expires_at: None,
            next_refresh_at: None,
        };
        store.upsert_account(&account, Timestamp::now()).await.unwrap();
    }

    let b = Browser::start().await;
    let c = b.c();
    b.sign_in(&sys.url, PASSWORD).await;
    b.wait_text("main h1", false, Duration::from_secs(10), |t| t == "Overview").await;
    c.goto(&format!("{}/dashboard/cron", sys.url)).await.unwrap();
    assert!(b.text("section[data-schedule=data_sync]").await.contains("every day at 03:00 (UTC)"));
    c.find(Locator::Css("section[data-schedule=data_sync] button")).await.unwrap().click().await.unwrap();
    b.wait_text("p.notice", false, Duration::from_secs(30), |t| t == "data_sync ran: 3 jobs enqueued.").await;
    let latest = "section[data-schedule=data_sync] table.firings tbody tr:first-child";
    assert_eq!(b.text(&format!("{latest} td:nth-child(2)")).await, "dashboard (run now)");
    assert_eq!(b.text(&format!("{latest} td:nth-child(4)")).await, "3 jobs enqueued");
    assert_eq!(b.text(&format!("{latest} td:nth-child(5)")).await, "ok");
    b.screenshot("cron-run-now").await;

    // The pruner is listed beside the sweeps; run by hand, it deletes a notification delivered
    // 40 days ago and says so.
    let old = Timestamp::now().minus(Duration::from_secs(40 * 86_400));
    let note = jobs::store::NewNotification { user_id: "u".into(), account_id: None, kind: "reauth".into(), payload: serde_json::json!({}) };
    let id = store.add_notification(&note, old).await.unwrap();
    store.record_delivery(id, None, old).await.unwrap();
    assert!(b.text("section[data-schedule=prune]").await.contains("0 0 1 1 *"));
    let retention = b.text("section.retention table.retention").await;
    assert!(retention.contains("Succeeded jobs 7 days RETAIN_DONE_JOBS"), "{retention}");
    assert!(b.text("section.retention table.sizes").await.contains("job_runs"));
    c.find(Locator::Css("section[data-schedule=prune] button")).await.unwrap().click().await.unwrap();
    b.wait_text("p.notice", false, Duration::from_secs(30), |t| t.starts_with("prune ran: ")).await;
    assert_eq!(b.text("p.notice").await, "prune ran: removed notifications 1.");
    let latest = "section[data-schedule=prune] table.firings tbody tr:first-child";
    assert_eq!(b.text(&format!("{latest} td:nth-child(4)")).await, "removed notifications 1");
    assert!(store.notification(id).await.unwrap().is_none());
    b.screenshot("cron-retention").await;

    // Paused from the overview's form, for an hour: the banner says so on every page, the cron
    // page too; resumed, it is gone.
    c.goto(&format!("{}/dashboard/", sys.url)).await.unwrap();
    assert_eq!(b.text("#pauses p").await, "Nothing is paused.");
    c.find(Locator::Css("form.pause-new select[name=target] option[value=data_sync]")).await.unwrap().click().await.unwrap();
    c.find(Locator::Css("form.pause-new select[name=minutes] option[value='60']")).await.unwrap().click().await.unwrap();
    c.find(Locator::Css("form.pause-new input[name=reason]")).await.unwrap().send_keys("database migration tonight").await.unwrap();
    c.find(Locator::Css("form.pause-new button")).await.unwrap().click().await.unwrap();
    b.wait_text("p.notice", false, Duration::from_secs(10), |t| t.starts_with("Paused the data_sync schedule")).await;
    c.goto(&format!("{}/dashboard/cron", sys.url)).await.unwrap();
    let banner = b.text("div.paused").await;
    assert!(banner.starts_with("Paused: the data_sync schedule, by ops (dashboard) at ") && banner.contains(": database migration tonight."), "{banner}");
    assert_eq!(b.text("section[data-schedule=data_sync] h2 span.paused").await, "paused", "the schedule itself says so");
    assert!(c.find(Locator::Css("section[data-schedule=token_refresh] h2 span.paused")).await.is_err(), "only it");
    b.screenshot("paused-banner").await;
    c.goto(&format!("{}/dashboard/", sys.url)).await.unwrap();
    c.find(Locator::Css("form.pause button[value=resume]")).await.unwrap().click().await.unwrap();
    b.wait_text("p.notice", false, Duration::from_secs(10), |t| t == "Resumed the data_sync schedule.").await;
    assert!(c.find(Locator::Css("div.paused")).await.is_err(), "the banner is gone");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_tiktok_s_syncs_stops_them_at_the_platform_while_instagram_s_go_on() {
    let sys = System::start().await;
    let store = sys.store().await;
    let sb = testkit::platform::SandboxServer::remote(&format!("{}/sandbox", sys.url));
    let vault = jobs::Vault::new(jobs::VaultKey::parse(&sys.key).unwrap(), vec![]);
    let tiktok = testkit::platform::connected_accounts_on(&store, &sb, &vault, Platform::Tiktok, 8, 2).await;
    let instagram = testkit::platform::connected_accounts_on(&store, &sb, &vault, Platform::Instagram, 8, 2).await;
    let ids = |a: &[(AccountId, String)]| a.iter().map(|(id, _)| *id).collect::<Vec<_>>();
    let (tiktok, instagram) = (ids(&tiktok), ids(&instagram));

    let b = Browser::start().await;
    let c = b.c();
    b.sign_in(&sys.url, PASSWORD).await;
    b.wait_text("main h1", false, Duration::from_secs(10), |t| t == "Overview").await;
    c.find(Locator::Css("form.pause-new select[name=target] option[value='sync:tiktok']")).await.unwrap().click().await.unwrap();
    c.find(Locator::Css("form.pause-new input[name=reason]")).await.unwrap().send_keys("TikTok returns 500s").await.unwrap();
    c.find(Locator::Css("form.pause-new button")).await.unwrap().click().await.unwrap();
    b.wait_text("p.notice", false, Duration::from_secs(10), |t| t.starts_with("Paused the sync queue's tiktok jobs")).await;
    let banner = b.text("div.paused").await;
    assert!(banner.starts_with("Paused: the sync queue's tiktok jobs, by ops (dashboard) at ") && banner.contains(": TikTok returns 500s."), "{banner}");
    assert_eq!(b.text("table.counts tbody tr:nth-child(3) th span.paused").await, "tiktok paused", "on the sync queue's row");

    testkit::eventually(Duration::from_secs(5), "the worker heard the pause", || async { sys.up.output().contains("paused: by ops (dashboard)") }).await;

    // Every account's sync requested, TikTok's first: Instagram's run, TikTok's wait.
    let from = sb.last_request_seq().await;
    for id in tiktok.iter().chain(&instagram) {
        store.enqueue(&sync::job(*id, SyncReason::Manual, Timestamp::now())).await.unwrap();
    }
    testkit::eventually(Duration::from_secs(60), "Instagram's accounts synced", || testkit::all_accounts(&store, &instagram, |a| a.last_synced_at.is_some())).await;
    assert!(testkit::all_accounts(&store, &tiktok, |a| a.last_synced_at.is_none()).await, "no TikTok account synced");
    assert_eq!(sb.arrivals_us("user/info", from).await.len(), 0, "no TikTok sync reached the platform");
    assert_eq!(sb.arrivals_us("me", from).await.len(), instagram.len(), "each Instagram sync did");
    // Not even claimed: a claimed TikTok sync would have left a run record (a deferral's).
    let jobs::store::Pool::Postgres(p) = store.pool() else { unreachable!() };
    let tiktok_ids: Vec<i64> = tiktok.iter().map(|a| a.0).collect();
    let runs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM job_runs WHERE account_id = ANY($1)").bind(&tiktok_ids).fetch_one(p).await.unwrap();
    assert_eq!(runs, 0, "no TikTok sync was claimed while paused");
    b.wait_text("table.counts a[data-cell='sync:pending']", true, Duration::from_secs(10), |t| t == tiktok.len().to_string()).await;
    b.screenshot("paused-tiktok").await;

    // Resumed: the backlog drains, each sync at its first attempt.
    c.find(Locator::Css("form.pause button[value=resume]")).await.unwrap().click().await.unwrap();
    b.wait_text("p.notice", false, Duration::from_secs(10), |t| t == "Resumed the sync queue's tiktok jobs.").await;
    assert!(c.find(Locator::Css("div.paused")).await.is_err(), "the banner is gone");
    testkit::eventually(Duration::from_secs(60), "TikTok's accounts synced", || testkit::all_accounts(&store, &tiktok, |a| a.last_synced_at.is_some())).await;
    assert_eq!(sb.arrivals_us("user/info", from).await.len(), tiktok.len());
    let attempts: Vec<i32> = sqlx::query_scalar("SELECT DISTINCT attempts FROM apalis.jobs WHERE job_type = 'sync' AND status = 'Done'").fetch_all(p).await.unwrap();
    assert_eq!(attempts, [1], "a pause spends no attempt");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_s_page_syncs_it_now_and_shows_the_attempt() {
    let sys = System::start().await;
    let store = sys.store().await;
    let sb = testkit::platform::SandboxServer::remote(&format!("{}/sandbox", sys.url));
    let vault = jobs::Vault::new(jobs::VaultKey::parse(&sys.key).unwrap(), vec![]);
    let (id, _) = testkit::platform::connected_accounts_on(&store, &sb, &vault, Platform::Instagram, 1, 3).await[0].clone();

    let b = Browser::start().await;
    let c = b.c();
    b.sign_in(&sys.url, PASSWORD).await;
    b.wait_text("main h1", false, Duration::from_secs(10), |t| t == "Overview").await;
    c.goto(&format!("{}/dashboard/accounts?username=fleet_ig0", sys.url)).await.unwrap();
    c.find(Locator::Css("table.accounts tbody a[href^='/dashboard/accounts/']")).await.unwrap().click().await.unwrap();
    b.wait_text("main h1", false, Duration::from_secs(10), |t| t == "instagram @fleet_ig0").await;
    assert!(b.text("table.runs").await.contains("No attempt recorded"), "never synced");
    let from = sb.last_request_seq().await;
    c.find(Locator::Css("form.actions button[value=sync]")).await.unwrap().click().await.unwrap();
    let notice = b.wait_text("p.notice", false, Duration::from_secs(10), |t| t.starts_with("A sync is queued: job ")).await;
    let job = notice.trim_start_matches("A sync is queued: job ").trim_end_matches('.').to_owned();
    // The attempt appears on the page once it has run, with its outcome.
    let row = b.wait_text("table.runs tbody tr:first-child", true, Duration::from_secs(30), |t| t.contains("succeeded")).await;
    assert!(row.starts_with("sync ") && row.contains(&job), "{row}");
    assert!(store.account(id).await.unwrap().unwrap().last_synced_at.is_some(), "synced");
    assert_eq!(sb.arrivals_us("me", from).await.len(), 1, "one profile read at the platform");
    assert!(b.text("p.figure").await.ends_with("followers at the last sync, 1 snapshot shown"));
    b.screenshot("account-page").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_added_from_the_command_line_signs_in_by_name_and_the_audit_page_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let (status, _, err) = run_with_input(dir.path(), &["ops", "add-user", "ana"], &[], "short\n");
    assert!(!status.success() && err.contains("shorter than 12 characters"), "{err}");
    let (status, line, err) = run_with_input(dir.path(), &["ops", "add-user", "ana"], &[], "ana's own long password\n");
    assert!(status.success() && line.starts_with("ana:$argon2id$") && !line.contains("long password"), "{line}{err}");
    let sys = System::start_with(false, &[("OPS_USERS", line.trim())]).await;

    let b = Browser::start().await;
    let c = b.c();
    c.goto(&format!("{}/dashboard/login", sys.url)).await.unwrap();
    c.find(Locator::Css("input[name=name]")).await.unwrap().send_keys("ana").await.unwrap();
    c.find(Locator::Css("input[name=password]")).await.unwrap().send_keys("not ana's password").await.unwrap();
    c.find(Locator::Css("form.login button")).await.unwrap().click().await.unwrap();
    b.wait_text("p.error", false, Duration::from_secs(10), |t| t == "Wrong name or password.").await;
    c.find(Locator::Css("input[name=name]")).await.unwrap().send_keys("ana").await.unwrap();
    c.find(Locator::Css("input[name=password]")).await.unwrap().send_keys("ana's own long password").await.unwrap();
    c.find(Locator::Css("form.login button")).await.unwrap().click().await.unwrap();
    b.wait_text("main h1", false, Duration::from_secs(10), |t| t == "Overview").await;
    c.find(Locator::Css("form.pause-new select[name=target] option[value=notify]")).await.unwrap().click().await.unwrap();
    c.find(Locator::Css("form.pause-new input[name=reason]")).await.unwrap().send_keys("webhook receiver down").await.unwrap();
    c.find(Locator::Css("form.pause-new button")).await.unwrap().click().await.unwrap();
    b.wait_text("p.notice", false, Duration::from_secs(10), |t| t.starts_with("Paused the notify queue")).await;
    assert!(b.text("div.paused").await.contains("by ana (dashboard)"), "the banner names her");

    c.goto(&format!("{}/dashboard/audit", sys.url)).await.unwrap();
    let rows = b.text("table.audit tbody").await;
    let lines: Vec<&str> = rows.lines().collect();
    assert!(lines[0].contains("ana pause target=notify") && lines[0].contains("ok: Paused the notify queue"), "{rows}");
    assert!(lines[1].contains("ana sign_in the dashboard ok"), "{rows}");
    assert!(lines[2].contains("ana sign_in.failed the dashboard refused: wrong name or password"), "{rows}");
    b.screenshot("audit").await;
    b.close().await;
    assert!(!sys.up.output().contains("long password"), "no password in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_demo_and_sign_in_pages_run_under_their_content_security_policy() {
    let sys = System::start_dev().await;
    // Swagger UI is one inline script and style, admitted by their hashes: it renders the spec.
    let (dom, console) = headless(&format!("{}/docs", sys.url), 10_000);
    assert!(dom.contains("class=\"swagger-ui\"") && dom.contains("list_accounts"), "the docs render the operations: {dom:.2000}");
    assert!(!console.contains("Content Security Policy"), "{console}");
    let (dom, console) = headless(&format!("{}/demo", sys.url), 5_000);
    assert!(dom.contains("No account connected yet."), "the demo's script ran: {dom:.2000}");
    assert!(!console.contains("Content Security Policy"), "{console}");
    let (dom, console) = headless(&format!("{}/dashboard/login", sys.url), 5_000);
    assert!(dom.contains("name=\"password\""), "{dom:.2000}");
    assert!(!console.contains("Content Security Policy"), "{console}");
}

/// A new user's first visit: connect a TikTok account, leave `/demo` open for 20 minutes. The
/// page keeps itself up to date inside the default `general` budget (100 requests / 15 min).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_left_open_for_twenty_minutes_never_meets_a_429() {
    let sys = System::start_dev().await;
    let page = reqwest::get(format!("{}/demo", sys.url)).await.unwrap().text().await.unwrap();
    let token = page.split("name=\"socialsync-token\" content=\"").nth(1).and_then(|t| t.split('"').next()).expect("a token").to_owned();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let started: serde_json::Value =
        http.post(format!("{}/api/v1/social-media/tiktok/connect", sys.url)).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let account = testkit::platform::account_id(&format!("{}/sandbox", sys.url), "dance.daily").await;
    let callback = testkit::platform::consent(started["authorization_url"].as_str().unwrap(), &account, true).await;
    let back = http.get(callback.as_str()).send().await.unwrap();
    let pending = back.headers()["location"].to_str().unwrap().to_owned();
    assert!(pending.contains("/demo?connect=pending"), "{pending}");
    // The connect and its first sync finish (watched in the database: API calls would count).
    let store = sys.store().await;
    testkit::eventually(Duration::from_secs(60), "the account connected and synced", || async {
        store.accounts_of_user("demo-user").await.unwrap().first().is_some_and(|a| a.last_synced_at.is_some())
    })
    .await;

    let (dom, console) = headless(&pending, 20 * 60 * 1000);
    assert!(!console.contains("Content Security Policy"), "{console}");
    assert!(!dom.contains("too many requests"), "the page met a 429: {dom:.3000}");
    assert!(dom.contains("@dance.daily") && dom.contains("<td>active</td>"), "the page shows the account: {dom:.3000}");
    assert!(dom.contains("Connecting your tiktok account: done."), "it followed the connect to its end: {dom:.3000}");
    let pool = sqlx::PgPool::connect(&sys.db.url).await.unwrap();
    let (spent,): (i64,) = sqlx::query_as("SELECT COALESCE(SUM(count), 0)::bigint FROM rate_limit_counters WHERE key = 'general:127.0.0.1'")
        .fetch_one(&pool)
        .await
        .unwrap();
    // About four requests a minute while idle: it kept polling, inside the budget.
    assert!((60..=100).contains(&spent), "{spent} requests counted against the general budget");
    let refused: i64 = store.counter_hours(jobs::store::API_429_COUNTER, Timestamp(0)).await.unwrap().iter().map(|(_, n)| n).sum();
    assert_eq!(refused, 0, "no 429 was answered");
}
