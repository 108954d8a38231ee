//! The dashboard over real HTTP, in-process, on a real database: every page renders on both
//! backends, actions need the session's CSRF token, "all matching" asks first, read-only and
//! "off" refuse, sessions cannot be forged.

use std::time::Duration;

use dashboard::Access;
use jobs::{
    Platform, Secret, Timestamp,
    store::{JobFilter, JobOutcome, JobRunStart, JobState, NewAccount, Pool, ProcessBeat, ProcessQueue, Snapshot},
    sync::{self, SyncReason},
    vault::Aad,
};
use reqwest::{StatusCode, header};
use testkit::{TestDb, both_backends};

mod common;
use common::{dead_syncs, serve};

both_backends! {
    async fn a_pause_from_the_overview_shows_on_every_page_until_resumed(db: TestDb) {
        let mut ops = serve(&db, Access::Open, false).await;
        let token = ops.csrf("/").await;
        let pause = |csrf: &str, target: &str, minutes: &str, reason: &str| {
            [("csrf", csrf.to_owned()), ("action", "pause".into()), ("target", target.into()), ("minutes", minutes.into()), ("reason", reason.into())]
        };
        let post = |form: [(&'static str, String); 5]| {
            let ops = &ops;
            async move { ops.post("/pauses", &form.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>()).await.1 }
        };
        // Refused: a forged token, no reason, nothing by that name, a length not offered.
        for (form, says) in [
            (pause("forged", "sync", "30", "outage"), "security%20token"),
            (pause(&token, "sync", "30", " "), "Say%20why"),
            (pause(&token, "syncs", "30", "outage"), "Choose%20a%20queue"),
            (pause(&token, "sync", "7", "outage"), "how%20long"),
        ] {
            let location = post(form).await;
            assert!(location.contains("error=") && location.contains(says), "{location}");
        }
        assert!(db.store.pauses(jobs::Timestamp::now()).await.unwrap().is_empty());

        let before = jobs::Timestamp::now();
        let location = post(pause(&token, "sync", "30", "TikTok returns 500s")).await;
        assert!(location.contains("notice=Paused%20the%20sync%20queue"), "{location}");
        let pauses = db.store.pauses(jobs::Timestamp::now()).await.unwrap();
        assert_eq!(pauses.len(), 1, "{pauses:?}");
        let p = &pauses[0];
        assert_eq!((p.scope.as_str(), p.paused_by.as_str(), p.reason.as_str()), ("queue:sync", "ops (dashboard)", "TikTok returns 500s"));
        let lasts = p.until.unwrap().millis() - p.paused_at.millis();
        assert!(p.paused_at >= before && lasts == 30 * 60 * 1000, "{p:?}");
        for page in ["/", "/jobs", "/cron", "/workers", "/accounts", "/health"] {
            let (_, html) = ops.get(page).await;
            assert!(html.contains("Paused: the sync queue") && html.contains("TikTok returns 500s"), "{page} has the banner");
        }
        let (_, html) = ops.get("/").await;
        assert!(html.contains(r#"<span class="state paused">paused</span>"#), "the overview marks the queue");

        let resume = [("csrf", token.as_str()), ("action", "resume"), ("target", "sync")];
        let (_, location, _) = ops.post("/pauses", &resume).await;
        assert!(location.contains("notice=Resumed%20the%20sync%20queue"), "{location}");
        let (_, html) = ops.get("/health").await;
        assert!(!html.contains("Paused: "), "the banner is gone");
        let (_, location, _) = ops.post("/pauses", &resume).await;
        assert!(location.contains("was%20not%20paused"), "{location}");
    }

    async fn a_queue_s_concurrency_is_set_and_reset_from_the_overview(db: TestDb) {
        let mut ops = serve(&db, Access::Open, false).await;
        let token = ops.csrf("/").await;
        let set = |n: &str| [("csrf", token.clone()), ("action", "set".into()), ("queue", "sync".into()), ("concurrency", n.into())];
        for n in ["0", "257", "many"] {
            let form = set(n);
            let (_, location, _) = ops.post("/concurrency", &form.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>()).await;
            assert!(location.contains("error=Give%201%20to%20256"), "{n}: {location}");
        }
        assert!(db.store.live_concurrency().await.unwrap().is_empty());
        let form = set("3");
        let (_, location, _) = ops.post("/concurrency", &form.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>()).await;
        assert!(location.contains("notice=The%20sync%20queue%20runs%203%20attempts"), "{location}");
        let live = db.store.live_concurrency().await.unwrap();
        assert_eq!((live.len(), live[0].queue.as_str(), live[0].concurrency, live[0].set_by.as_str()), (1, "sync", 3, "ops (dashboard)"));
        let (_, html) = ops.get("/").await;
        assert!(html.contains("<strong>sync</strong>: 3 attempts at once per worker process, set by ops (dashboard)"), "{html}");
        let (_, html) = ops.get("/workers").await;
        assert!(html.contains("Set live over the configured concurrency below: sync 3 per process (by ops (dashboard))."), "{html}");
        let (_, location, _) = ops.post("/concurrency", &[("csrf", &token), ("action", "reset"), ("queue", "sync")]).await;
        assert!(location.contains("back%20to%20each%20process"), "{location}");
        assert!(db.store.live_concurrency().await.unwrap().is_empty());
        let trail = db.store.audit_entries(&jobs::store::AuditFilter::default(), None, 10).await.unwrap();
        assert_eq!(trail.iter().filter(|e| e.action.starts_with("concurrency.")).count(), 5, "each try is audited: {trail:?}");
    }

    async fn every_page_renders_what_the_store_holds(db: TestDb) {
        let s = &db.store;
        let v = jobs::Vault::new(jobs::VaultKey::parse(jobs::VaultKey::generate().expose()).unwrap(), vec![]);
        let account = s.upsert_account(&NewAccount {
            user_id: "user-7".into(), platform: Platform::Tiktok, platform_user_id: "tt-7".into(), username: "dancer_7".into(),
            display_name: None, scopes: String::new(),
            access_token: v.seal(&Aad::account(Platform::Tiktok, "tt-7", "access_token"), &Secret::from("act.secret.value")),
            refresh_token: None, access_expires_at: Timestamp::now().plus(Duration::from_secs(3600)), refresh_expires_at: None, next_refresh_at: None,
        }, Timestamp::now()).await.unwrap();
        let job = s.enqueue(&sync::job(account.id, SyncReason::Manual, Timestamp::now().plus(Duration::from_secs(600)))).await.unwrap().id;
        let run = s.start_job_run(&JobRunStart { queue: jobs::refresh::KIND, job_id: "r1", account_id: Some(account.id), attempt: 1, worker: "p" }, Timestamp::now()).await.unwrap();
        s.finish_job_run(run, JobOutcome::Succeeded, None, None, Timestamp::now()).await.unwrap();
        let queues = [ProcessQueue { queue: "sync".into(), concurrency: 8 }];
        s.beat_process(&ProcessBeat { name: "box-42-beef", host: "box", pid: 42, queues: &queues, started_at: Timestamp::now(), stale_after: Duration::from_secs(5) }, Timestamp::now()).await.unwrap();

        let mut ops = serve(&db, Access::Open, false).await;
        let detail = format!("/jobs/{job}");
        // The refresh above, in the 90-day chart of attempts per day.
        let today = format!("{}: 1 succeeded, 0 failed", Timestamp::now().to_datetime().format("%b %d"));
        for (path, expect) in [
            ("/", today.as_str()),
            ("/", r#"data-cell="sync:scheduled" href="/dashboard/jobs?queue=sync&amp;state=scheduled">1<"#),
            ("/workers", r#"<a href="/dashboard/workers" aria-current="page">Workers</a>"#),
            ("/jobs?queue=sync", job.as_str()),
            (detail.as_str(), "account_id"),
            ("/jobs?account=abc", "the account id must be a number"),
            ("/cron", "every day at 02:00 (UTC)"),
            ("/workers", "box-42-beef"),
            ("/workers", "sync (8)"),
            ("/accounts?username=DANCER", "@dancer_7"),
            ("/accounts?status=reauth_required", "No account matches."),
            ("/health", "Latest ("),
            ("/health", "Accounts that became inactive per week"),
            ("/jobs/NOPE", "No job NOPE"),
        ] {
            let (status, html) = ops.get(path).await;
            assert_eq!(status, 200, "{path}");
            assert!(html.contains(expect), "{path} shows {expect:?}:\n{html}");
            assert!(!html.contains("act.secret.value"), "no token on {path}");
        }
    }

    async fn an_account_s_page_shows_its_history_and_acts_on_it(db: TestDb) {
        let s = &db.store;
        let v = jobs::Vault::new(jobs::VaultKey::parse(jobs::VaultKey::generate().expose()).unwrap(), vec![]);
        let now = Timestamp::now();
        let account = s.upsert_account(&NewAccount {
            user_id: "user-8".into(), platform: Platform::Tiktok, platform_user_id: "tt-8".into(), username: "singer_8".into(),
            display_name: None, scopes: "user.info.basic".into(),
            access_token: v.seal(&Aad::account(Platform::Tiktok, "tt-8", "access_token"), &Secret::from("act.secret.value")),
            refresh_token: Some(v.seal(&Aad::account(Platform::Tiktok, "tt-8", "refresh_token"), &Secret::from("rft.secret.value"))),
            access_expires_at: now.plus(Duration::from_secs(86_400)), refresh_expires_at: None, next_refresh_at: Some(now.plus(Duration::from_secs(9_000))),
        }, now).await.unwrap().id;
        for (days_ago, followers) in [(2, 10), (1, 12)] {
            let snap = Snapshot { taken_at: now.minus(Duration::from_secs(days_ago * 86_400)), followers_count: Some(followers), ..Default::default() };
            s.save_sync(account, None, &snap, &[], snap.taken_at).await.unwrap();
        }
        let run = s.start_job_run(&JobRunStart { queue: jobs::refresh::KIND, job_id: "01REFRESHED", account_id: Some(account), attempt: 1, worker: "p" }, now).await.unwrap();
        s.finish_job_run(run, JobOutcome::Retrying, Some("transient"), Some("TikTok answered 503"), now).await.unwrap();

        let mut ops = serve(&db, Access::Open, false).await;
        let page = format!("/accounts/{}", account.0);
        let (status, html) = ops.get(&page).await;
        assert_eq!(status, 200);
        for expect in ["tiktok @singer_8", "user-8", "Next refresh", "(in 2 h)", "access token, encrypted and refresh token, encrypted", "max 12 followers", "12 followers at the last sync, 2 snapshots shown", "01REFRESHED", "transient TikTok answered 503", "Sync now", "Disconnect"] {
            assert!(html.contains(expect), "the page shows {expect:?}:\n{html}");
        }
        assert!(!html.contains("act.secret.value") && !html.contains("rft.secret.value"), "never a token");
        let (_, list) = ops.get("/accounts?user=user-8").await;
        assert!(list.contains(&format!(r#"href="/dashboard/accounts/{}""#, account.0)), "the list links to it");

        let token = ops.csrf(&page).await;
        let acts = format!("{page}/act");
        assert!(ops.post(&acts, &[("csrf", "forged"), ("action", "sync")]).await.1.contains("security%20token"));
        assert_eq!(s.waiting_job(sync::KIND, Some(&sync::dedup_key(account))).await.unwrap(), None, "nothing queued");
        let location = ops.post(&acts, &[("csrf", &token), ("action", "sync")]).await.1;
        let waiting = s.waiting_job(sync::KIND, Some(&sync::dedup_key(account))).await.unwrap().expect("a sync queued");
        assert!(location.starts_with(&format!("/dashboard{page}?notice=A%20sync%20is%20queued")) && location.contains(&waiting), "{location}");
        assert!(ops.post(&acts, &[("csrf", &token), ("action", "sync")]).await.1.contains("already%20waiting"), "a second click stands on the first");
        assert!(ops.post(&acts, &[("csrf", &token), ("action", "refresh")]).await.1.contains("A%20token%20refresh%20is%20queued"));
        let (_, html) = ops.get(&page).await;
        assert!(html.contains(&format!(r#"href="/dashboard/jobs/{waiting}""#)), "the waiting sync is linked");

        assert!(ops.post(&acts, &[("csrf", &token), ("action", "reconnect")]).await.1.contains("notice=Marked%20for%20reconnection"));
        let a = s.account(account).await.unwrap().unwrap();
        assert_eq!(a.status, jobs::AccountStatus::ReauthRequired);
        let notes = s.notifications_of_user("user-8", 10).await.unwrap();
        assert_eq!((notes.len(), notes[0].kind.as_str()), (1, "reauth_required"), "the user is told");
        assert!(ops.post(&acts, &[("csrf", &token), ("action", "sync")]).await.1.contains("does%20not%20apply"), "no sync of an account out of active");
        let (_, html) = ops.get(&page).await;
        assert!(html.contains("reauth_required") && !html.contains("Sync now") && html.contains("Disconnect"));

        assert!(ops.post(&acts, &[("csrf", &token), ("action", "disconnect")]).await.1.contains("notice=Disconnected"));
        let a = s.account(account).await.unwrap().unwrap();
        assert!(a.status == jobs::AccountStatus::Disconnected && a.access_token.is_none() && a.refresh_token.is_none(), "{a:?}");
        assert_eq!(s.snapshots(account, 10).await.unwrap().len(), 2, "history kept (KEEP_HISTORY_ON_DISCONNECT)");
        assert!(ops.post(&acts, &[("csrf", &token), ("action", "disconnect")]).await.1.contains("does%20not%20apply"));
        let (_, html) = ops.get("/accounts/99999999").await;
        assert!(html.contains("No account 99999999."));
    }

    async fn actions_need_the_csrf_token_and_all_matching_asks_first(db: TestDb) {
        let ids = dead_syncs(&db.store, 3).await;
        let mut ops = serve(&db, Access::Open, false).await;
        let token = ops.csrf("/jobs").await;
        let dead = JobFilter { state: Some(JobState::Dead), ..JobFilter::default() };

        let (status, location, _) = ops.post("/jobs/act", &[("csrf", "forged"), ("action", "retry"), ("id", &ids[0]), ("back", "/dashboard/jobs")]).await;
        assert_eq!(status, 303);
        assert!(location.starts_with("/dashboard/jobs?error=") && location.contains("security%20token"), "{location}");
        assert_eq!(db.store.count_jobs(&dead).await.unwrap(), 3, "nothing changed");

        let (_, location, _) = ops.post("/jobs/act", &[("csrf", &token), ("action", "retry"), ("back", "https://evil.example/")]).await;
        assert_eq!(location, "/dashboard/jobs?error=Select%20at%20least%20one%20job%20first.", "errors come back inline, never off-site");

        let (status, _, html) = ops.post("/jobs/act", &[("csrf", &token), ("all", "retry"), ("f_state", "dead"), ("back", "/dashboard/jobs?state=dead")]).await;
        assert_eq!(status, 200);
        assert!(html.contains(r#"<strong id="confirm-count">3</strong>"#), "asks first:\n{html}");
        assert_eq!(db.store.count_jobs(&dead).await.unwrap(), 3, "nothing changed yet");

        let (_, location, _) = ops.post("/jobs/act", &[("csrf", &token), ("all", "retry"), ("f_state", "dead"), ("confirmed", "3"), ("back", "/dashboard/jobs?state=dead")]).await;
        assert_eq!(location, "/dashboard/jobs?state=dead&notice=Retried%203%20jobs.");
        assert_eq!(db.store.count_jobs(&dead).await.unwrap(), 0);
        let pending = JobFilter { state: Some(JobState::Pending), ..JobFilter::default() };
        assert_eq!(db.store.count_jobs(&pending).await.unwrap(), 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_watchers_share_one_count_query_per_tick() {
    let db = TestDb::new(testkit::Backend::Postgres).await;
    let mut ops = serve(&db, Access::Open, false).await;
    ops.get("/").await; // the session cookie
    let mut streams = vec![];
    for _ in 0..5 {
        let resp = ops.http.get(format!("{}/dashboard/live", ops.url)).header(header::COOKIE, &ops.cookie).send().await.unwrap();
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
        streams.push(resp);
    }
    // Every watcher receives three frames…
    for resp in &mut streams {
        let mut frames = 0;
        while frames < 3 {
            let chunk = resp.chunk().await.unwrap().expect("the stream stays open");
            frames += String::from_utf8_lossy(&chunk).matches("data: {").count();
        }
    }
    // …and the counts were queried about once per tick, not once per watcher and tick (≥ 15).
    let computed = ops.dashboard.live_frames_computed();
    assert!((3..8).contains(&computed), "{computed} rounds of count queries for 5 watchers × 3 frames");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_shows_no_actions_and_refuses_them() {
    let db = TestDb::new(testkit::Backend::Postgres).await;
    let ids = dead_syncs(&db.store, 1).await;
    let mut ops = serve(&db, Access::Open, true).await;
    let (_, html) = ops.get("/jobs").await;
    assert!(!html.contains("retry all"));
    let (_, html) = ops.get("/cron").await;
    assert!(!html.contains("Run now"));
    let token = ops.csrf("/").await;
    let (_, location, _) = ops.post("/jobs/act", &[("csrf", &token), ("action", "retry"), ("id", &ids[0])]).await;
    assert!(location.contains("read-only"), "{location}");
    let (_, location, _) = ops.post("/cron/run", &[("csrf", &token), ("schedule", "data_sync")]).await;
    assert!(location.contains("read-only"), "{location}");
    assert!(db.store.cron_runs("data_sync", 5).await.unwrap().is_empty(), "nothing ran");
    let (_, html) = ops.get("/").await;
    assert!(html.contains("Nothing is paused.") && !html.contains(r#"value="pause""#), "no pause form");
    let (_, location, _) = ops.post("/pauses", &[("csrf", &token), ("action", "pause"), ("target", "sync"), ("minutes", "15"), ("reason", "x")]).await;
    assert!(location.contains("read-only"), "{location}");
    assert!(db.store.pauses(jobs::Timestamp::now()).await.unwrap().is_empty(), "nothing paused");
    let account = testkit::account(&db.store, Platform::Instagram, "ig-ro", Timestamp::now()).await;
    let (_, html) = ops.get(&format!("/accounts/{}", account.0)).await;
    assert!(html.contains("@ig-ro") && !html.contains("Sync now") && !html.contains("Disconnect"), "no account actions");
    let (_, location, _) = ops.post(&format!("/accounts/{}/act", account.0), &[("csrf", &token), ("action", "disconnect")]).await;
    assert!(location.contains("read-only"), "{location}");
    let (_, html) = ops.get("/").await;
    assert!(!html.contains(r#"value="set""#), "no concurrency form");
    let (_, location, _) = ops.post("/concurrency", &[("csrf", &token), ("action", "set"), ("queue", "sync"), ("concurrency", "2")]).await;
    assert!(location.contains("read-only") && db.store.live_concurrency().await.unwrap().is_empty(), "{location}");
    assert_eq!(db.store.account(account).await.unwrap().unwrap().status, jobs::AccountStatus::Active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_without_a_password_and_sessions_cannot_be_forged() {
    let db = TestDb::new(testkit::Backend::Postgres).await;
    let mut off = serve(&db, Access::Off, false).await;
    let (status, html) = off.get("/jobs").await;
    assert_eq!(status, 200);
    assert!(html.contains("The dashboard is off") && html.contains("OPS_PASSWORD"));

    let mut ops = serve(&db, Access::password(Secret::from("s3cret-pass")), false).await;
    let (status, _) = ops.get("/").await;
    assert_eq!(status, 303, "sign in first");
    let (status, _) = ops.get("/live").await;
    assert_eq!(status, 401, "the event stream is refused, not redirected");
    let (status, _, html) = ops.post("/login", &[("password", "nope")]).await;
    assert_eq!(status, 401);
    assert!(html.contains("Wrong password."));
    let resp = ops.http.post(format!("{}/dashboard/login", ops.url)).form(&[("password", "s3cret-pass")]).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    let cookie = resp.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/dashboard"));
    ops.cookie = cookie.split(';').next().unwrap().to_owned();
    assert_eq!(ops.get("/").await.0, 200);
    // Move the expiry a year on: the signature no longer matches.
    let (name, value) = ops.cookie.split_once('=').unwrap();
    let (expires, rest) = value.split_once('.').unwrap();
    ops.cookie = format!("{name}={}.{rest}", expires.parse::<i64>().unwrap() + 365 * 86_400_000);
    assert_eq!(ops.get("/").await.0, 303, "a forged session is refused");
}

/// Past `EXACT_COUNTS_BELOW` rows the overview marks its done counts as estimates, on the page
/// and in the live frames; the other counts stay exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_table_shows_its_done_count_as_an_estimate() {
    let db = TestDb::new(testkit::Backend::Postgres).await;
    let Pool::Postgres(pool) = db.store.pool() else { unreachable!("a PostgreSQL store") };
    let rows = jobs::store::EXACT_COUNTS_BELOW as i64 + 10_000;
    sqlx::query(
        "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority, done_at)
         SELECT 'BIG' || lpad(i::text, 23, '0'), 'sync', convert_to('{}', 'UTF8'), 'Done', 1, 5, now(), 0, now()
         FROM generate_series(1, $1) AS i",
    )
    .bind(rows)
    .execute(pool)
    .await
    .unwrap();
    dead_syncs(&db.store, 2).await;
    sqlx::query("ANALYZE apalis.jobs").execute(pool).await.unwrap();

    let mut ops = serve(&db, Access::Open, false).await;
    let (status, page) = ops.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(r#"data-cell="sync:done""#) && page.contains("≈ "), "the done count is marked");
    assert!(page.contains("estimated-note"), "and explained");
    let mut live = ops.http.get(format!("{}/dashboard/live", ops.url)).header(header::COOKIE, &ops.cookie).send().await.unwrap();
    let mut text = String::new();
    while !text.contains("\n\n") {
        text.push_str(&String::from_utf8_lossy(&live.chunk().await.unwrap().expect("a frame")));
    }
    let frame: serde_json::Value = serde_json::from_str(text.split("data: ").nth(1).unwrap().split("\n\n").next().unwrap()).unwrap();
    let sync = &frame["queues"][sync::KIND];
    assert_eq!((sync["counts"]["dead"].as_i64(), sync["estimated"].clone()), (Some(2), serde_json::json!(["done"])), "dead stays exact");
    let done = sync["counts"]["done"].as_i64().unwrap();
    assert!((done - rows).abs() < rows / 20, "done ≈ {rows}, got {done}");
}
