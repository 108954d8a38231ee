//! The `/api/v1` endpoints over real HTTP, against a real database and the sandbox platform:
//! each endpoint's success and failure paths, the error body, and the rate limits.

mod common;

use std::{sync::Arc, time::Duration};

use api::{ApiConfig, auth::Jwt, limits::Policies};
use jobs::{Secret, Store, Timestamp};
use reqwest::Method;
use serde_json::{Value, json};
use testkit::{TestDb, both_backends, platform::param};

use common::*;
both_backends! {
    async fn connect_callback_queues_the_connect_and_refuses_replays(db: TestDb) {
        let app = start(db, |_| {}).await;
        let redirect = app.consent("user-1", "tiktok", "dance.daily", true).await;
        let (status, _, location) = app.follow(&redirect).await;
        assert_eq!(status, 303);
        let location = location.unwrap();
        assert!(location.as_str().starts_with("https://app.example.com/settings/social?"), "{location}");
        assert_eq!(param(&location, "connect").as_deref(), Some("pending"));
        assert_eq!(param(&location, "platform").as_deref(), Some("tiktok"));
        let job_id = param(&location, "job_id").unwrap();
        let job = app.db.store.job_row(&job_id).await.unwrap().expect("the connect job is queued");
        assert_eq!(job.queue, "connect");
        let code = param(&redirect, "code").unwrap();
        assert!(!job.payload.contains(&code), "the code is not in the job payload");

        // The job is the caller's; another user sees nothing.
        let (status, body, _) = app.call(Method::GET, &format!("/api/v1/jobs/{job_id}"), Some("user-1"), None).await;
        assert_eq!((status.as_u16(), body["queue"].as_str()), (200, Some("connect")), "{body}");
        let (status, body, _) = app.call(Method::GET, &format!("/api/v1/jobs/{job_id}"), Some("user-2"), None).await;
        assert_error(status, &body, 404, "NOT_FOUND");

        // The same callback again: the state is spent.
        let (status, body, _) = app.follow(&redirect).await;
        assert_error(status, &body, 400, "OAUTH_STATE_INVALID");
    }

    async fn denied_consent_redirects_with_the_reason(db: TestDb) {
        let app = start(db, |_| {}).await;
        let redirect = app.consent("user-1", "instagram", "acme_studio", false).await;
        let (status, _, location) = app.follow(&redirect).await;
        assert_eq!(status, 303);
        let location = location.unwrap();
        assert_eq!(param(&location, "connect").as_deref(), Some("error"));
        assert_eq!(param(&location, "reason").as_deref(), Some("access_denied"));
        assert!(app.db.store.accounts_of_user("user-1").await.unwrap().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_with_bad_states_are_refused_with_json() {
    let app = start(TestDb::new(testkit::Backend::Postgres).await, |_| {}).await;
    let redirect = app.consent("user-1", "tiktok", "dance.daily", true).await;
    let state = param(&redirect, "state").unwrap();
    let code = param(&redirect, "code").unwrap();
    let cases = [
        ("missing state", format!("/api/v1/social-media/tiktok/callback?code={code}")),
        ("unknown state", format!("/api/v1/social-media/tiktok/callback?code={code}&state=nope")),
        ("wrong platform", format!("/api/v1/social-media/instagram/callback?code={code}&state={state}")),
        ("oversized state", format!("/api/v1/social-media/tiktok/callback?code={code}&state={}", "s".repeat(300))),
    ];
    for (what, path) in cases {
        let (status, body, _) = app.call(Method::GET, &path, None, None).await;
        assert_eq!(body["error"]["code"], "OAUTH_STATE_INVALID", "{what}: {body}");
        assert_eq!(status, 400, "{what}");
    }
    let (status, body, _) = app.call(Method::GET, &format!("/api/v1/social-media/tiktok/callback?state={state}&code={}", "x".repeat(3000)), None, None).await;
    assert_error(status, &body, 400, "INVALID_REQUEST");
    let (status, body, _) = app.call(Method::GET, &format!("/api/v1/social-media/myspace/callback?state={state}&code={code}"), None, None).await;
    assert_error(status, &body, 400, "UNKNOWN_PLATFORM");
    // None of that spent the real state: the genuine callback still works.
    let (status, _, location) = app.follow(&redirect).await;
    assert_eq!((status.as_u16(), location.and_then(|l| param(&l, "connect"))), (303, Some("pending".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_state_is_refused() {
    let app = start(TestDb::new(testkit::Backend::Postgres).await, |_| {}).await;
    let redirect = app.consent("user-1", "instagram", "acme_studio", true).await;
    let hash = api::v1::state_hash(&param(&redirect, "state").unwrap());
    let jobs::store::Pool::Postgres(pool) = app.db.store.pool() else { unreachable!() };
    sqlx::query("UPDATE oauth_states SET expires_at = 0 WHERE state_hash = $1").bind(&hash).execute(pool).await.unwrap();
    let (status, body, _) = app.follow(&redirect).await;
    assert_error(status, &body, 400, "OAUTH_STATE_INVALID");
}

/// An account of `user`'s, stored as a finished connect would.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_are_read_synced_and_disconnected_by_their_owner_only() {
    let app = start(TestDb::new(testkit::Backend::Postgres).await, |_| {}).await;
    let id = account(&app, "user-1", "puid-1").await;
    let (status, body, _) = app.call(Method::GET, "/api/v1/social-media/accounts", Some("user-1"), None).await;
    assert_eq!(status, 200);
    assert_eq!(body.as_array().unwrap().len(), 1);
    assert_eq!((body[0]["id"].as_i64(), body[0]["status"].as_str(), body[0]["platform"].as_str()), (Some(id), Some("active"), Some("tiktok")));
    assert!(!body.to_string().contains("act.secret"), "no token in the response: {body}");
    let (_, body, _) = app.call(Method::GET, "/api/v1/social-media/accounts", Some("user-2"), None).await;
    assert_eq!(body, json!([]));

    let sync = format!("/api/v1/social-media/accounts/{id}/sync");
    let (status, first, _) = app.call(Method::POST, &sync, Some("user-1"), None).await;
    assert_eq!((status.as_u16(), first["created"].as_bool()), (202, Some(true)), "{first}");
    let (status, again, _) = app.call(Method::POST, &sync, Some("user-1"), None).await;
    assert_eq!((status.as_u16(), again["created"].as_bool()), (202, Some(false)));
    assert_eq!(again["job_id"], first["job_id"], "the waiting sync answers for the second request");
    let (status, job, _) = app.call(Method::GET, &format!("/api/v1/jobs/{}", first["job_id"].as_str().unwrap()), Some("user-1"), None).await;
    assert_eq!((status.as_u16(), job["queue"].as_str()), (200, Some("sync")));

    let stats = format!("/api/v1/social-media/accounts/{id}/stats");
    let (status, body, _) = app.call(Method::GET, &stats, Some("user-1"), None).await;
    assert_eq!((status.as_u16(), body["posts_count"].as_i64(), body["latest"].is_null()), (200, Some(0), true), "{body}");
    let (status, body, _) = app.call(Method::GET, &format!("{stats}?history=0"), Some("user-1"), None).await;
    assert_error(status, &body, 400, "INVALID_REQUEST");

    for (method, path) in [(Method::POST, sync.clone()), (Method::GET, stats.clone()), (Method::DELETE, format!("/api/v1/social-media/accounts/{id}"))] {
        let (status, body, _) = app.call(method.clone(), &path, Some("user-2"), None).await;
        assert_error(status, &body, 404, "NOT_FOUND");
    }
    let (status, body, _) = app.call(Method::GET, "/api/v1/social-media/accounts/999999/stats", Some("user-1"), None).await;
    assert_error(status, &body, 404, "NOT_FOUND");

    let (status, _, _) = app.call(Method::DELETE, &format!("/api/v1/social-media/accounts/{id}"), Some("user-1"), None).await;
    assert_eq!(status, 204);
    let stored = app.db.store.account(jobs::AccountId(id)).await.unwrap().unwrap();
    assert!(stored.access_token.is_none() && stored.status == jobs::AccountStatus::Disconnected);
    let (_, body, _) = app.call(Method::GET, "/api/v1/social-media/accounts", Some("user-1"), None).await;
    assert_eq!(body, json!([]), "the list holds connected accounts by default");
    let (status, body, _) = app.call(Method::POST, &sync, Some("user-1"), None).await;
    assert_error(status, &body, 409, "ACCOUNT_NOT_ACTIVE");

    // `?status=` lists the others: disconnected, and reconnect-needed next to active.
    let (status, body, _) = app.call(Method::GET, "/api/v1/social-media/accounts?status=disconnected", Some("user-1"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body.as_array().unwrap().len(), body[0]["id"].as_i64(), body[0]["status"].as_str()), (1, Some(id), Some("disconnected")), "{body}");
    assert!(body[0]["status_changed_at"].is_string());
    let other = account(&app, "user-1", "puid-2").await;
    app.db.store.set_account_status(jobs::AccountId(other), jobs::AccountStatus::ReauthRequired, Timestamp::now()).await.unwrap();
    let (_, body, _) = app.call(Method::GET, "/api/v1/social-media/accounts?status=reauth_required&status=disconnected", Some("user-1"), None).await;
    let mut listed: Vec<(i64, String)> = body.as_array().unwrap().iter().map(|a| (a["id"].as_i64().unwrap(), a["status"].as_str().unwrap().to_owned())).collect();
    listed.sort();
    assert_eq!(listed, vec![(id, "disconnected".to_owned()), (other, "reauth_required".to_owned())]);
    let (_, body, _) = app.call(Method::GET, "/api/v1/social-media/accounts", Some("user-1"), None).await;
    assert_eq!(body.as_array().unwrap().len(), 1, "reconnect-needed accounts are listed by default: {body}");
    let (status, body, _) = app.call(Method::GET, "/api/v1/social-media/accounts?status=gone", Some("user-1"), None).await;
    assert_error(status, &body, 400, "INVALID_REQUEST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_errors_never_a_500() {
    let app = start(TestDb::new(testkit::Backend::Postgres).await, |_| {}).await;
    let (status, body, _) = app.call(Method::GET, "/api/v1/social-media/accounts", None, None).await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    let expired = app.http.get(format!("{}/api/v1/social-media/accounts", app.url)).bearer_auth(Jwt::new(&Secret::from("other")).issue("user-1", 600)).send().await.unwrap();
    assert_eq!(expired.status(), 401);
    let (status, body, _) = app.call(Method::POST, "/api/v1/social-media/myspace/connect", Some("user-1"), None).await;
    assert_error(status, &body, 400, "UNKNOWN_PLATFORM");
    let (status, body, _) = app.call(Method::GET, "/api/v1/nothing-here", Some("user-1"), None).await;
    assert_error(status, &body, 404, "NOT_FOUND");
    let (status, body, _) = app.call(Method::PUT, "/api/v1/social-media/accounts", Some("user-1"), None).await;
    assert_eq!(body["error"]["code"].as_str().map(|c| c == "METHOD_NOT_ALLOWED" || c == "NOT_FOUND"), Some(true), "{status} {body}");
    let (status, body, _) = app.call(Method::GET, "/api/v1/social-media/accounts/abc/stats", Some("user-1"), None).await;
    assert_error(status, &body, 400, "INVALID_REQUEST");

    let consume = |body: &str| app.http.post(format!("{}/api/v1/limits/chat/consume", app.url)).header("x-service-token", "service-token").header("content-type", "application/json").body(body.to_owned()).send();
    let resp = consume("{not json").await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["code"], "INVALID_REQUEST");
    let resp = consume(r#"{"key":"k","extra":1}"#).await.unwrap();
    assert_eq!(resp.status(), 400, "unknown fields are refused");
    let resp = consume(&format!(r#"{{"key":"{}"}}"#, "k".repeat(5000))).await.unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["code"], "PAYLOAD_TOO_LARGE");
    let resp = consume(r#"{"key":"k"}"#).await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_their_413_not_a_reset() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = start(TestDb::new(testkit::Backend::Postgres).await, |_| {}).await;
    let path = "/api/v1/limits/chat/consume";
    // Far more than the socket buffers hold: refused on its declared length, the body must still
    // be read off the connection, or the client gets a reset while writing instead of the answer.
    let big = "x".repeat(6 << 20);
    for attempt in 1..=10 {
        let resp = app.http.post(format!("{}{path}", app.url)).header("x-service-token", "service-token").header("content-type", "application/json").body(big.clone()).send().await;
        let resp = resp.unwrap_or_else(|e| panic!("attempt {attempt}: {e:?}"));
        assert_eq!(resp.status(), 413, "attempt {attempt}");
        assert_eq!(resp.json::<Value>().await.unwrap()["error"]["code"], "PAYLOAD_TOO_LARGE");
    }
    // A body without a declared length is cut at the limit the same way.
    let mut conn = tokio::net::TcpStream::connect(app.url.trim_start_matches("http://")).await.unwrap();
    let head = format!("POST {path} HTTP/1.1\r\nhost: x\r\nx-service-token: service-token\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n");
    conn.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 64 << 10, "x".repeat(64 << 10));
    for _ in 0..16 {
        conn.write_all(chunk.as_bytes()).await.unwrap();
    }
    conn.write_all(b"0\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("PAYLOAD_TOO_LARGE"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sixth_failed_authentication_is_limited_and_two_servers_share_the_count() {
    let db = Arc::new(TestDb::new(testkit::Backend::Postgres).await);
    let policies = |c: &mut ApiConfig| c.policies = Policies::with_overrides("general=10000/15m").unwrap();
    let one = start_on(db.clone(), db.store.clone(), policies).await;
    let second_pool = Store::connect(&testkit::db_config(&db.url)).await.unwrap();
    let two = start_on(db.clone(), second_pool, policies).await;
    // Five failures, spread over both servers: each answered 401.
    for (i, app) in [&one, &two, &one, &two, &one].into_iter().enumerate() {
        let resp = app.http.get(format!("{}/api/v1/social-media/accounts", app.url)).bearer_auth("forged.token.here").send().await.unwrap();
        assert_eq!(resp.status(), 401, "failure {}", i + 1);
    }
    // The sixth, on the server that has seen only two: limited, with the headers.
    let resp = two.http.get(format!("{}/api/v1/social-media/accounts", two.url)).bearer_auth("forged.token.here").send().await.unwrap();
    assert_eq!(resp.status(), 429);
    let h = resp.headers().clone();
    for name in ["retry-after", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"] {
        assert!(h.contains_key(name), "{name} in {h:?}");
    }
    assert_eq!(h["ratelimit-limit"], "5");
    assert_eq!(h["ratelimit-remaining"], "0");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "RATE_LIMIT_EXCEEDED");
    assert!(body["error"]["retry_after_seconds"].as_u64().unwrap() >= 1);
    // Locked out: a request without a valid credential is refused, whatever it carries...
    let run = |app: &App, secret: &str| app.http.post(format!("{}/api/v1/jobs/data-sync/run", app.url)).header("x-cron-secret", secret).send();
    assert_eq!(run(&one, "wrong-secret").await.unwrap().status(), 429, "a wrong cron secret");
    assert_eq!(one.http.get(format!("{}/api/v1/social-media/accounts", one.url)).send().await.unwrap().status(), 429, "no credential at all");
    // ...and one with a valid credential is served: the address is shared by its good clients.
    let (status, body, _) = two.call(Method::GET, "/api/v1/social-media/accounts", Some("user-1"), None).await;
    assert_eq!(status, 200, "a valid JWT from the locked-out address: {body}");
    assert_eq!(run(&one, CRON_SECRET).await.unwrap().status(), 200, "the right cron secret");
    let consume = one.http.post(format!("{}/api/v1/limits/chat/consume", one.url)).header("x-service-token", "service-token").json(&json!({"key": "u1"}));
    assert_eq!(consume.send().await.unwrap().status(), 200, "the right service token");
    // The failures go on counting: the address is still locked out for the next bad token.
    let resp = one.http.get(format!("{}/api/v1/social-media/accounts", one.url)).bearer_auth("forged.token.here").send().await.unwrap();
    assert_eq!(resp.status(), 429, "the address stays locked out");
}

/// A password-protected dashboard, cookies `Secure` only over HTTPS.
fn dashboard_config() -> dashboard::DashboardConfig {
    dashboard::DashboardConfig {
        access: dashboard::Access::password(Secret::from("the-ops-password")),
        session_key: [1; 32],
        read_only: false,
        secure_cookies: false,
        schedules: vec![],
        timezone: chrono_tz::Tz::UTC,
        sweep_chunk: 100,
        live_every: Duration::from_secs(1),
        keep_history_on_disconnect: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_sign_ins_spend_the_auth_budget_and_429s_are_counted() {
    let app = start(TestDb::new(testkit::Backend::Postgres).await, |c| c.dashboard = Some(dashboard_config())).await;
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let sign_in = |password: &'static str| no_redirects.post(format!("{}/dashboard/login", app.url)).form(&[("password", password)]).send();
    // An operator signed in before the address is locked out...
    let signed_in = sign_in("the-ops-password").await.unwrap();
    assert_eq!(signed_in.status(), 303, "the right password signs in");
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    // Two forged API tokens and three wrong passwords: five failures from one address.
    for _ in 0..2 {
        assert_eq!(app.call(Method::GET, "/api/v1/social-media/accounts", None, None).await.0, 401);
    }
    for _ in 0..3 {
        assert_eq!(sign_in("guess").await.unwrap().status(), 401);
    }
    let sixth = sign_in("guess").await.unwrap();
    assert_eq!(sixth.status(), 429, "five failures use up the budget");
    assert!(sixth.headers().contains_key("retry-after"));
    assert!(sixth.text().await.unwrap().contains("Too many failed sign-ins"), "said on the sign-in page");
    assert_eq!(sign_in("the-ops-password").await.unwrap().status(), 429, "even the right password waits");
    // A password can be guessed, so a locked-out address signs in with none (the right one
    // must not tell itself apart); a valid JWT proves itself, so the API serves it.
    assert_eq!(app.call(Method::GET, "/api/v1/social-media/accounts", None, None).await.0, 429, "the API refuses the unauthenticated");
    assert_eq!(app.call(Method::GET, "/api/v1/social-media/accounts", Some("user-1"), None).await.0, 200, "and serves a valid user");
    // ...keeps working: the session cookie proves who they are.
    let page = no_redirects.get(format!("{}/dashboard/", app.url)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(page.status(), 200, "a signed-in operator's dashboard from the locked-out address");
    // Each 429 answered is counted for the dashboard's health page.
    testkit::eventually(Duration::from_secs(10), "the 429s are counted", || async {
        let hours = app.db.store.counter_hours(jobs::store::API_429_COUNTER, Timestamp::now().minus(Duration::from_secs(7200))).await.unwrap();
        hours.iter().map(|(_, n)| n).sum::<i64>() >= 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_and_service_limits_apply() {
    let app = start(TestDb::new(testkit::Backend::Postgres).await, |c| {
        c.policies = Policies::with_overrides("general=10000/15m,sync=2/15m,chat=2/5m").unwrap();
    })
    .await;
    let id = account(&app, "user-1", "puid-1").await;
    let sync = format!("/api/v1/social-media/accounts/{id}/sync");
    for _ in 0..2 {
        assert_eq!(app.call(Method::POST, &sync, Some("user-1"), None).await.0, 202);
    }
    let (status, body, headers) = app.call(Method::POST, &sync, Some("user-1"), None).await;
    assert_error(status, &body, 429, "RATE_LIMIT_EXCEEDED");
    assert!(headers.contains_key("retry-after"));
    let other = account(&app, "user-2", "puid-2").await;
    assert_eq!(app.call(Method::POST, &format!("/api/v1/social-media/accounts/{other}/sync"), Some("user-2"), None).await.0, 202, "another user has their own budget");

    let consume = || app.http.post(format!("{}/api/v1/limits/chat/consume", app.url)).header("x-service-token", "service-token").json(&json!({"key": "u1"})).send();
    let first: Value = consume().await.unwrap().json().await.unwrap();
    assert_eq!((first["allowed"].as_bool(), first["limit"].as_u64(), first["remaining"].as_u64()), (Some(true), Some(2), Some(1)));
    assert_eq!(consume().await.unwrap().status(), 200);
    assert_eq!(consume().await.unwrap().status(), 429);
    let wrong = app.http.post(format!("{}/api/v1/limits/chat/consume", app.url)).header("x-service-token", "nope").json(&json!({"key": "u1"})).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let unknown = app.http.post(format!("{}/api/v1/limits/nope/consume", app.url)).header("x-service-token", "service-token").json(&json!({"key": "u1"})).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_triggers_need_the_cron_secret_and_count_what_they_queue() {
    let app = start(TestDb::new(testkit::Backend::Postgres).await, |_| {}).await;
    let id = account(&app, "user-1", "puid-1").await;
    let run = |path: &str, secret: Option<&str>| {
        let mut req = app.http.post(format!("{}/api/v1/jobs/{path}", app.url));
        if let Some(s) = secret {
            req = req.header("x-cron-secret", s);
        }
        req.send()
    };
    assert_eq!(run("data-sync/run", None).await.unwrap().status(), 401);
    assert_eq!(run("data-sync/run", Some("wrong")).await.unwrap().status(), 401);
    let resp = run("data-sync/run", Some(CRON_SECRET)).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["enqueued"], 1, "the never-synced account");
    let again: Value = run("data-sync/run", Some(CRON_SECRET)).await.unwrap().json().await.unwrap();
    assert_eq!(again["enqueued"], 0, "its sync is already waiting");
    let one: Value = run(&format!("token-refresh/run?account_id={id}"), Some(CRON_SECRET)).await.unwrap().json().await.unwrap();
    assert_eq!(one["enqueued"], 1);
    assert!(one["job_id"].is_string());
    assert_eq!(run("token-refresh/run?account_id=424242", Some(CRON_SECRET)).await.unwrap().status(), 404);

    let (status, body, _) = app.call(Method::GET, "/api/v1/notifications", Some("user-1"), None).await;
    assert_eq!((status.as_u16(), body), (200, json!([])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spec_and_docs_are_served() {
    let app = start(TestDb::new(testkit::Backend::Postgres).await, |_| {}).await;
    let (status, spec, _) = app.call(Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for path in ["/social-media/{platform}/connect", "/social-media/{platform}/callback", "/social-media/accounts", "/jobs/{id}", "/limits/{policy}/consume"] {
        assert!(spec["paths"].get(path).is_some(), "{path} in the spec");
    }
    let docs = app.http.get(format!("{}/docs", app.url)).send().await.unwrap();
    assert_eq!(docs.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_security_headers_and_the_session_cookie_is_secure_over_https() {
    let db = Arc::new(TestDb::new(testkit::Backend::Postgres).await);
    let behind_proxy = start_on(db.clone(), db.store.clone(), |c| {
        c.dashboard = Some(dashboard_config());
        c.demo_user = Some("demo-user".into());
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let get = |path: &str| behind_proxy.http.get(format!("{}{path}", behind_proxy.url)).send();
    for path in ["/docs", "/docs/", "/demo", "/dashboard/login", "/dashboard/", "/dashboard/assets/dashboard.js"] {
        let resp = get(path).await.unwrap();
        assert!(resp.status().is_success() || resp.status().is_redirection(), "{path}: {}", resp.status());
        let h = resp.headers();
        let csp = h.get("content-security-policy").unwrap_or_else(|| panic!("{path} has a CSP")).to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{path}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "same-origin", "{path}");
    }
    // The pages with inline code admit exactly it, by hash.
    let docs_csp = get("/docs").await.unwrap().headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(docs_csp.contains("script-src 'self' 'sha256-"), "{docs_csp}");
    // The API's JSON, an error included, is never sniffed.
    for path in ["/api/v1/openapi.json", "/api/v1/social-media/accounts", "/healthz"] {
        let resp = get(path).await.unwrap();
        assert_eq!(resp.headers()["x-content-type-options"], "nosniff", "{path} ({})", resp.status());
    }

    let sign_in = |app: &App, proto: Option<&'static str>| {
        let mut req = app.http.post(format!("{}/dashboard/login", app.url)).form(&[("password", "the-ops-password")]);
        if let Some(p) = proto {
            req = req.header("x-forwarded-proto", p);
        }
        let req = req.send();
        async move {
            let resp = req.await.unwrap();
            assert_eq!(resp.status(), 303);
            resp.headers()["set-cookie"].to_str().unwrap().to_owned()
        }
    };
    let secure = |cookie: &str| cookie.split(';').any(|a| a.trim() == "Secure");
    assert!(secure(&sign_in(&behind_proxy, Some("https")).await), "a trusted proxy says the browser used HTTPS");
    assert!(!secure(&sign_in(&behind_proxy, Some("http")).await), "a trusted proxy says it used plain HTTP");
    assert!(!secure(&sign_in(&behind_proxy, None).await), "no word from the proxy: plain HTTP");
    let direct = start_on(db.clone(), db.store.clone(), |c| c.dashboard = Some(dashboard_config())).await;
    assert!(!secure(&sign_in(&direct, Some("https")).await), "an untrusted peer's X-Forwarded-Proto is not believed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_can_drop_the_history_and_notifications_are_the_callers() {
    use jobs::{AccountId, Timestamp, store::{NewNotification, Post, Snapshot}};
    let app = start(TestDb::new(testkit::Backend::Postgres).await, |c| c.keep_history_on_disconnect = false).await;
    let id = account(&app, "user-1", "puid-1").await;
    let now = Timestamp::now();
    let snap = Snapshot { taken_at: now, followers_count: Some(42), ..Snapshot::default() };
    let post = Post { platform_post_id: "p1".into(), caption: Some("hello".into()), ..Post::default() };
    app.db.store.save_sync(AccountId(id), None, &snap, &[post], now).await.unwrap();
    let (_, stats, _) = app.call(Method::GET, &format!("/api/v1/social-media/accounts/{id}/stats"), Some("user-1"), None).await;
    assert_eq!((stats["latest"]["followers_count"].as_i64(), stats["posts_count"].as_i64()), (Some(42), Some(1)), "{stats}");
    assert_eq!(stats["recent_posts"][0]["caption"], "hello");

    let note = NewNotification { user_id: "user-1".into(), account_id: Some(AccountId(id)), kind: "reauth_required".into(), payload: json!({"platform": "tiktok"}) };
    app.db.store.add_notification(&note, now).await.unwrap();
    let (status, notes, _) = app.call(Method::GET, "/api/v1/notifications", Some("user-1"), None).await;
    assert_eq!(status, 200);
    assert_eq!((notes[0]["kind"].as_str(), notes[0]["account_id"].as_i64(), notes[0]["payload"]["platform"].as_str()), (Some("reauth_required"), Some(id), Some("tiktok")), "{notes}");
    let (_, theirs, _) = app.call(Method::GET, "/api/v1/notifications", Some("user-2"), None).await;
    assert_eq!(theirs, json!([]));

    let (status, _, _) = app.call(Method::DELETE, &format!("/api/v1/social-media/accounts/{id}"), Some("user-1"), None).await;
    assert_eq!(status, 204);
    assert_eq!(app.db.store.post_count(AccountId(id)).await.unwrap(), 0);
    assert!(app.db.store.snapshots(AccountId(id), 10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_needs_apalis_migrations_as_well_as_socialsyncs() {
    let app = start(TestDb::new(testkit::Backend::Postgres).await, |_| {}).await;
    let (status, body, _) = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["queue_schema_version"].as_i64().is_some_and(|v| v > 0), "{body}");
    // As if the database had been migrated by an older build: apalis' newest migration missing.
    let pool = sqlx::PgPool::connect(&app.db.url).await.unwrap();
    sqlx::query("DELETE FROM apalis._sqlx_migrations WHERE version = (SELECT MAX(version) FROM apalis._sqlx_migrations)").execute(&pool).await.unwrap();
    let (status, body, _) = app.call(Method::GET, "/readyz", None, None).await;
    assert_error(status, &body, 503, "SCHEMA_NOT_MIGRATED");
    assert!(body["error"]["message"].as_str().unwrap().contains("apalis' queue tables"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_database_requests_get_503_json() {
    let app = start(TestDb::new(testkit::Backend::Postgres).await, |_| {}).await;
    app.db.store.close().await;
    let (status, body, headers) = app.call(Method::GET, "/api/v1/social-media/accounts", Some("user-1"), None).await;
    assert_error(status, &body, 503, "DATABASE_UNAVAILABLE");
    assert!(headers.contains_key("retry-after"));
    let (status, body, _) = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, 503, "{body}");
}
