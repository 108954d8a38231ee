//! The API under load: requests per second and latency (p50, p99) for the status read
//! (`GET /api/v1/social-media/accounts`) and the sync request (`POST …/accounts/{id}/sync`),
//! each with a user JWT checked and the rate limiter counting in PostgreSQL (its limits raised
//! so that it counts but never refuses). The sync request is measured twice: for a different
//! account each time, so that each one queues a new job (what a frontend's many users send),
//! and repeated for one account, answered with the job already waiting. Load from `wrk`
//! (Debian's package), one thread and 32 connections for 10 s, against a `socialsync api`
//! process on a fresh database. Baseline: `GET /healthz` on the same process — the HTTP
//! floor, with no auth, limiter or database.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use jobs::{Platform, Timestamp, Vault, VaultKey, store::NewAccount, vault::Aad};

use crate::{Figure, memory::spawn};

/// What `wrk --latency` printed, read.
struct Load {
    requests: i64,
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// How many accounts the new-job sync request cycles through, per second of load: more than
/// the API answers in a second on any machine seen, so that no request repeats an account.
const ACCOUNTS_PER_SEC: i64 = 10_000;

fn wrk(url: &str, secs: u64, headers: &[String], script: Option<&std::path::Path>) -> Load {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t1", "-c32", &format!("-d{secs}s"), "--latency"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    let out = cmd.arg(url).output().expect("wrk runs (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("Non-2xx"), "some answers were not 2xx:\n{text}");
    let field = |prefix: &str| text.lines().find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_owned())).unwrap_or_else(|| panic!("no {prefix:?} in:\n{text}"));
    let requests = text.lines().find_map(|l| l.split_once(" requests in ").and_then(|(n, _)| n.trim().parse().ok())).unwrap_or_else(|| panic!("no request count in:\n{text}"));
    Load { requests, per_sec: field("Requests/sec:").parse().expect("a rate"), p50_ms: millis(&field("50%")), p99_ms: millis(&field("99%")) }
}

/// `1.23ms`, `456.00us`, `1.01s` as milliseconds.
fn millis(v: &str) -> f64 {
    let (n, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
    let n: f64 = n.parse().unwrap_or_else(|_| panic!("a latency, not {v:?}"));
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => panic!("unknown unit in {v:?}"),
    }
}

pub async fn run(secs: u64) -> Vec<Figure> {
    let (db, store, pool) = crate::database().await;
    let key = VaultKey::generate();
    let vault = Vault::new(VaultKey::parse(key.expose()).expect("a fresh key parses"), vec![]);
    let jwt_secret = "bench-jwt-secret-bench-jwt-secret";
    let now = Timestamp::now();
    let aad = |f| Aad::account(Platform::Tiktok, "bench-account", f);
    let account = store
        .upsert_account(
            &NewAccount {
                user_id: "bench-user".into(),
                platform: Platform::Tiktok,
                platform_user_id: "bench-account".into(),
                username: "bench".into(),
                display_name: None,
                scopes: "user.info.basic".into(),
                access_token: vault.seal(&aad("access_token"), &jobs::Secret::from("act.bench")),
                refresh_token: None,
                access_expires_at: now.plus(Duration::from_secs(86_400)),
                refresh_expires_at: None,
                next_refresh_at: None,
            },
            now,
        )
        .await
        .expect("the account is stored");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("an address").port();
    let base = format!("http://127.0.0.1:{port}");
    let limits = "general=100000000/1m,auth=100000000/1m,sync=100000000/1m,connect=100000000/1m";
    let _api = spawn(
        &["api", "--no-migrate"],
        &[
            ("DATABASE_URL", db.url.as_str()),
            ("ENCRYPTION_KEY", key.expose().as_str()),
            ("SANDBOX", "true"),
            ("JWT_SECRET", jwt_secret),
            ("BIND_ADDR", &format!("127.0.0.1:{port}")),
            ("RATE_LIMITS", limits),
            ("DATABASE_MAX_CONNECTIONS", "20"),
        ],
    );
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !http.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
        assert!(Instant::now() < deadline, "the API did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The many accounts the new-job sync requests go to, of another user, so that the status
    // read still lists one. Their tokens are never opened: a sync request only queues.
    let (first, last): (i64, i64) = sqlx::query_as(
        "WITH a AS (
            INSERT INTO social_accounts (user_id, platform, platform_user_id, username, status, status_changed_at,
                access_token_enc, access_expires_at, created_at, updated_at)
            SELECT 'bench-many', 'tiktok', 'many-' || i, 'creator' || i, 'active', 0, 'sealed-placeholder', 4102444800000, 0, 0
            FROM generate_series(1, $1) AS i RETURNING id)
         SELECT min(id), max(id) FROM a",
    )
    .bind(ACCOUNTS_PER_SEC * secs as i64)
    .fetch_one(&pool)
    .await
    .expect("accounts inserted");
    let auth = vec![format!("Authorization: Bearer {}", jwt(jwt_secret, "bench-user"))];
    let many_auth = vec![format!("Authorization: Bearer {}", jwt(jwt_secret, "bench-many"))];
    let dir = testkit::tempfile::tempdir().expect("a temporary folder");
    let post = dir.path().join("post.lua");
    std::fs::write(&post, "wrk.method = \"POST\"\n").expect("the wrk script is written");
    // One thread (`-t1`), so one counter walks the ids across all connections.
    let post_each = dir.path().join("post_each.lua");
    let script = format!(
        "local first, last = {first}, {last}\nlocal id = first - 1\n\
         request = function()\n  id = id + 1\n  if id > last then id = first end\n  \
         return wrk.format(\"POST\", \"/api/v1/social-media/accounts/\" .. id .. \"/sync\")\nend\n"
    );
    std::fs::write(&post_each, script).expect("the wrk script is written");

    // wrk blocks; the API runs in its own process, so the runtime may wait.
    let floor = tokio::task::block_in_place(|| wrk(&format!("{base}/healthz"), secs, &[], None));
    let read = tokio::task::block_in_place(|| wrk(&format!("{base}/api/v1/social-media/accounts"), secs, &auth, None));
    let each = tokio::task::block_in_place(|| wrk(&base, secs, &many_auth, Some(&post_each)));
    let repeat = tokio::task::block_in_place(|| wrk(&format!("{base}/api/v1/social-media/accounts/{}/sync", account.id), secs, &auth, Some(&post)));
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM apalis.jobs").fetch_one(&pool).await.expect("jobs counted");
    // Each new-job request queued one (wrk's count leaves out the few cut off at its end;
    // the repeats queued one more).
    assert!(each.requests <= last - first + 1, "the accounts ran out: raise ACCOUNTS_PER_SEC");
    assert!(queued > each.requests, "{queued} jobs queued for {} new-job sync requests", each.requests);
    drop(db);
    let mut figures = vec![];
    let runs = [("status read", &read, "≥ 5000 req/s"), ("sync request, a new job each", &each, "≥ 1500 req/s"), ("sync request, repeated for one account", &repeat, "")];
    for (what, load, rate_target) in runs {
        figures.push(Figure {
            name: format!("API {what}, requests per second (auth + limiter, 32 connections)"),
            value: load.per_sec,
            baseline_name: "GET /healthz on the same process".into(),
            baseline: floor.per_sec,
            unit: "req/s",
            target: rate_target.into(),
        });
        for (p, v, b) in [("p50", load.p50_ms, floor.p50_ms), ("p99", load.p99_ms, floor.p99_ms)] {
            figures.push(Figure {
                name: format!("API {what}, {p} latency under that load"),
                value: v,
                baseline_name: format!("GET /healthz {p}"),
                baseline: b,
                unit: "ms",
                target: if p == "p99" && !rate_target.is_empty() { "< 50 ms" } else { "" }.into(),
            });
        }
    }
    figures
}

/// An HS256 user token, as the platform's backend would issue it.
fn jwt(secret: &str, sub: &str) -> String {
    #[derive(serde::Serialize)]
    struct Claims<'a> {
        sub: &'a str,
        exp: u64,
    }
    let exp = jsonwebtoken::get_current_timestamp() + 3600;
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &Claims { sub, exp }, &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes())).expect("HS256 signs")
}
