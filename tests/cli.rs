//! The binary as an operator meets it: real processes, real signals, real databases.

mod support;

use std::time::Duration;

use support::{Proc, get_json, run};
use testkit::{Backend, TestDb};

/// Fresh secrets from `socialsync keys generate`, as (name, value) pairs.
fn generated_keys(dir: &std::path::Path) -> Vec<(String, String)> {
    let (status, out, _) = run(dir, &["keys", "generate"], &[]);
    assert!(status.success());
    out.lines()
        .map(|l| {
            let (k, v) = l.split_once('=').expect("NAME=value lines");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn env_of(keys: &[(String, String)]) -> Vec<(&str, &str)> {
    keys.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn assert_no_secret(output: &str, keys: &[(String, String)]) {
    for (name, value) in keys {
        assert!(!output.contains(value.as_str()), "{name}'s value appears in the output:\n{output}");
    }
}

#[test]
fn keys_generate_prints_env_lines() {
    let dir = tempfile::tempdir().unwrap();
    let keys = generated_keys(dir.path());
    let names: Vec<_> = keys.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["ENCRYPTION_KEY", "CRON_JOB_SECRET", "JWT_SECRET", "NOTIFY_WEBHOOK_SECRET"]);
    assert!(jobs::VaultKey::parse(&keys[0].1).is_ok());
    assert_ne!(generated_keys(dir.path())[0].1, keys[0].1, "fresh every time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_on_a_fresh_folder_uses_sqlite_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = Proc::spawn(dir.path(), &[], &[]);
    let url = up.wait_for_url();
    let (status, body) = get_json(&format!("{url}/readyz")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["database"], "sqlite");
    assert_eq!(body["schema_version"], migrations::latest_version());
    assert!(dir.path().join("data/socialsync.db").is_file());
    assert!(up.output().contains("generated a development key"), "says so in the log");
    let key = std::fs::read_to_string(dir.path().join("data/dev-encryption.key")).unwrap();
    assert_eq!(get_json(&format!("{url}/healthz")).await.0, 200);
    let metrics = reqwest::get(format!("{url}/metrics")).await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    // What the alert rules read (deploy/prometheus), once the worker has beaten and sampled.
    testkit::eventually(Duration::from_secs(20), "the alert rules' worker metrics", || async {
        let text = reqwest::get(format!("{url}/metrics")).await.unwrap().text().await.unwrap();
        text.contains("socialsync_worker_heartbeat_timestamp_seconds ") && text.contains(r#"socialsync_queue_oldest_due_seconds{queue="sync"} 0"#)
    })
    .await;

    up.signal("INT");
    let (exit, took) = up.wait_exit(Duration::from_secs(30));
    assert!(exit.success(), "{exit}");
    println!("up stopped {took:?} after Ctrl-C");
    assert!(!up.output().contains(key.trim()), "the key never reaches the log");

    // A second start reuses the development key and the database.
    let mut again = Proc::spawn(dir.path(), &["up"], &[]);
    let url = again.wait_for_url();
    assert_eq!(get_json(&format!("{url}/readyz")).await.0, 200);
    assert!(!again.output().contains("generated a development key"));
    assert_eq!(std::fs::read_to_string(dir.path().join("data/dev-encryption.key")).unwrap(), key);
}

/// Fresh production secrets and `DATABASE_URL`, as the environment of a process under test.
/// With the sandbox asked for: no platform credentials exist here.
fn production_env<'a>(keys: &'a [(String, String)], db: &'a TestDb) -> Vec<(&'a str, &'a str)> {
    let mut env = env_of(keys);
    env.push(("DATABASE_URL", &db.url));
    env.push(("SANDBOX", "true"));
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_on_postgres_migrate_twice_then_api_and_worker() {
    let db = TestDb::empty(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let keys = generated_keys(dir.path());
    let env = production_env(&keys, &db);

    for _ in 0..2 {
        let (status, out, err) = run(dir.path(), &["migrate"], &env);
        assert!(status.success(), "{out}{err}");
        assert!(err.contains("migrations applied"), "{err}");
    }
    assert_eq!(db.store.schema_version().await.unwrap(), Some(migrations::latest_version()));

    let mut api = Proc::spawn(dir.path(), &["api"], &env);
    let url = api.wait_for_url();
    let (status, body) = get_json(&format!("{url}/readyz")).await;
    assert_eq!((status, body["database"].as_str()), (200, Some("postgres")), "{body}");

    let mut worker = Proc::spawn(dir.path(), &["worker"], &env);
    worker.wait_for_line(Duration::from_secs(60), |l| l.contains("worker started"));
    worker.signal("TERM");
    let (exit, _) = worker.wait_exit(Duration::from_secs(30));
    assert!(exit.success(), "{exit}");
    assert!(worker.output().contains("worker stopped"));

    api.signal("TERM");
    assert!(api.wait_exit(Duration::from_secs(30)).0.success());
    assert_no_secret(&format!("{}\n{}", api.output(), worker.output()), &keys);
    assert!(!dir.path().join("data").exists(), "PostgreSQL mode writes nothing locally");
}

/// Each process says at start how it reached PostgreSQL, so an operator reading a slow
/// worker's log sees TLS on a connection to the same machine (about 15 % of the throughput,
/// BENCHMARKS.md) without asking the server. Held against the server's own settings, over the
/// test database's own transport (TCP, or a Unix socket) and over the server's socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_process_says_how_it_reached_postgresql() {
    let db = TestDb::new(Backend::Postgres).await;
    let jobs::store::Pool::Postgres(pool) = db.store.pool() else { unreachable!("a PostgreSQL test database") };
    let (version, ssl, socket_dir, tcp): (String, String, String, bool) = sqlx::query_as(
        "SELECT current_setting('server_version'), current_setting('ssl'),
            trim(split_part(current_setting('unix_socket_directories'), ',', 1)), inet_server_addr() IS NOT NULL",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys = generated_keys(dir.path());
    let said = |query: &[(&str, &str)]| {
        let mut url = url::Url::parse(&db.url).unwrap();
        url.query_pairs_mut().clear().extend_pairs(query);
        let mut env = env_of(&keys);
        env.push(("DATABASE_URL", url.as_str()));
        let (status, out, err) = run(dir.path(), &["migrate"], &env);
        assert!(status.success(), "{out}{err}");
        let line = err.lines().find(|l| l.contains("connected to PostgreSQL")).unwrap_or_else(|| panic!("no connection line:\n{err}"));
        assert!(line.contains(&format!("PostgreSQL {version} over ")), "{line}");
        line.to_owned()
    };
    let plain = said(&[("sslmode", "disable")]);
    if tcp {
        assert!(plain.contains("over TCP to ") && plain.contains("without TLS"), "{plain}");
        // A client's default takes TLS whenever the server offers it.
        let tls = if ssl == "on" { "with TLS (TLSv1" } else { "without TLS" };
        let prefer = said(&[("sslmode", "prefer")]);
        assert!(prefer.contains("over TCP to ") && prefer.contains(tls), "ssl = {ssl}: {prefer}");
    } else {
        assert!(plain.contains("over a Unix socket"), "{plain}");
    }
    let socket = said(&[("host", &socket_dir)]);
    assert!(socket.contains("over a Unix socket"), "{socket}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_processes_share_the_failed_authentication_count() {
    let db = TestDb::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let keys = generated_keys(dir.path());
    let env = production_env(&keys, &db);
    let mut first = Proc::spawn(dir.path(), &["api"], &env);
    let mut second = Proc::spawn(dir.path(), &["api"], &env);
    let (one, two) = (first.wait_for_url(), second.wait_for_url());
    let http = reqwest::Client::new();
    let forged = |url: &str| http.get(format!("{url}/api/v1/social-media/accounts")).bearer_auth("forged.jwt.value").send();
    for (i, url) in [&one, &two, &one, &two, &one].into_iter().enumerate() {
        assert_eq!(forged(url).await.unwrap().status(), 401, "failure {} is answered 401", i + 1);
    }
    let sixth = forged(&two).await.unwrap();
    assert_eq!(sixth.status(), 429, "the sixth, on the process that saw two, is limited");
    for header in ["retry-after", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"] {
        assert!(sixth.headers().contains_key(header), "{header}");
    }
    let body: serde_json::Value = sixth.json().await.unwrap();
    assert_eq!(body["error"]["code"], "RATE_LIMIT_EXCEEDED");
    assert_no_secret(&format!("{}\n{}", first.output(), second.output()), &keys);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_json_until_the_schema_is_migrated() {
    let db = TestDb::empty(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let keys = generated_keys(dir.path());
    let env = production_env(&keys, &db);
    let mut api = Proc::spawn(dir.path(), &["api", "--no-migrate"], &env);
    let url = api.wait_for_url();
    let (status, body) = get_json(&format!("{url}/readyz")).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "SCHEMA_NOT_MIGRATED");
    db.migrate().await;
    assert_eq!(get_json(&format!("{url}/readyz")).await.0, 200);
}

#[test]
fn bad_settings_stop_startup_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let keys = generated_keys(dir.path());
    let key = keys[0].1.as_str();
    let both_platforms = [
        ("INSTAGRAM_CLIENT_ID", "i"), ("INSTAGRAM_CLIENT_SECRET", "s"), ("INSTAGRAM_REDIRECT_URI", "https://x/cb"),
        ("TIKTOK_CLIENT_KEY", "k"), ("TIKTOK_CLIENT_SECRET", "s"), ("TIKTOK_REDIRECT_URI", "https://x/cb"),
    ];
    let cases: &[(&[&str], Vec<(&str, &str)>, &str)] = &[
        (&["api"], vec![("ENCRYPTION_KEY", "not-a-key")], "ENCRYPTION_KEY is malformed"),
        (&["api"], vec![("ENCRYPTION_KEY", "c2hvcnQ=")], "ENCRYPTION_KEY is malformed: expected 64 bytes"),
        (&["api"], vec![], "ENCRYPTION_KEY is not set"),
        (&["worker"], vec![], "ENCRYPTION_KEY is not set"),
        (&["api"], vec![("ENCRYPTION_KEY", key), ("DATABASE_URL", "postgres://root:hunter2@127.0.0.1:9/x")], "cannot open database postgres://root:***@127.0.0.1:9/x"),
        (&["migrate"], vec![("DATABASE_URL", "mysql://db/x")], "DATABASE_URL is malformed"),
        (&["api"], vec![("ENCRYPTION_KEY", key), ("BIND_ADDR", "nowhere")], "BIND_ADDR is malformed"),
        (&["up"], vec![("DATABASE_MAX_CONNECTIONS", "many")], "DATABASE_MAX_CONNECTIONS is malformed"),
        (&["worker"], vec![("PACING_MARGIN_MS", "soon")], "PACING_MARGIN_MS is malformed"),
        (&["worker"], vec![("ENCRYPTION_KEY", key), ("PACING_MARGIN_MS", "-1")], "PACING_MARGIN_MS is out of range"),
        (&["up"], vec![("TIKTOK_CLIENT_KEY", "k")], "TIKTOK_CLIENT_SECRET, TIKTOK_REDIRECT_URI not set"),
        (&["up"], vec![("SANDBOX", "false")], "INSTAGRAM_CLIENT_ID, INSTAGRAM_CLIENT_SECRET, INSTAGRAM_REDIRECT_URI not set: set them, or SANDBOX=true"),
        (&["api"], vec![("SANDBOX", "false"), ("ENCRYPTION_KEY", key)], "INSTAGRAM_CLIENT_ID, INSTAGRAM_CLIENT_SECRET, INSTAGRAM_REDIRECT_URI not set"),
        (&["worker"], vec![("SANDBOX", "false"), ("INSTAGRAM_CLIENT_ID", "i"), ("INSTAGRAM_CLIENT_SECRET", "s"), ("INSTAGRAM_REDIRECT_URI", "https://x/cb")], "TIKTOK_CLIENT_KEY, TIKTOK_CLIENT_SECRET, TIKTOK_REDIRECT_URI not set"),
        (&["api"], [both_platforms.as_slice(), &[("SANDBOX", "false"), ("SANDBOX_URL", "http://127.0.0.1:9")]].concat(), "SANDBOX_URL is set but SANDBOX is not true"),
        (&["api"], vec![("SANDBOX", "maybe")], "SANDBOX is malformed"),
        (&["--config", "missing.toml"], vec![], "configuration file missing.toml does not exist"),
    ];
    for (args, env, expected) in cases {
        // The sandbox on, unless the case says otherwise (a later value wins).
        let env: Vec<_> = [("SANDBOX", "true")].into_iter().chain(env.iter().copied()).collect();
        let (status, out, err) = run(dir.path(), args, &env);
        assert!(!status.success(), "{args:?} {env:?} should fail");
        assert_eq!(err.lines().count(), 1, "one line, got:\n{err}");
        assert!(err.contains(expected), "{args:?}: expected {expected:?} in {err:?}");
        assert!(!err.contains("panicked") && !err.contains("hunter2") && !err.contains(key), "{err}");
        assert!(out.is_empty(), "{out}");
    }
}

#[test]
fn a_toml_file_sits_under_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.toml"), "database_url = \"mysql://from-file\"\n").unwrap();
    let (status, _, err) = run(dir.path(), &["--config", "s.toml", "migrate"], &[]);
    assert!(!status.success() && err.contains("DATABASE_URL is malformed"), "the file is read: {err}");
    let (status, _, err) = run(dir.path(), &["migrate"], &[("SOCIALSYNC_CONFIG", "s.toml")]);
    assert!(!status.success() && err.contains("DATABASE_URL is malformed"), "SOCIALSYNC_CONFIG names the file: {err}");
    let (status, _, err) = run(dir.path(), &["--config", "s.toml", "migrate"], &[("DATABASE_URL", "sqlite://env.db")]);
    assert!(status.success(), "the environment wins: {err}");
    assert!(dir.path().join("env.db").is_file());

    std::fs::write(dir.path().join("bad.toml"), "no_such_setting = 1\n").unwrap();
    let (status, _, err) = run(dir.path(), &["--config", "bad.toml"], &[]);
    assert!(!status.success() && err.contains("unknown setting `no_such_setting`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_moves_every_secret_to_the_new_key() {
    use jobs::{Platform, Secret, Timestamp, Vault, VaultKey, store::NewAccount, vault::Aad};
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (generated_keys(dir.path()), generated_keys(dir.path()));
    let old_key = VaultKey::parse(&old[0].1).unwrap();
    let vault = Vault::new(old_key.clone(), vec![]);
    let aad = |field| Aad::account(Platform::Instagram, "ig-1", field);
    let account = NewAccount {
        user_id: "u".into(),
        platform: Platform::Instagram,
        platform_user_id: "ig-1".into(),
        username: "acme".into(),
        display_name: None,
        scopes: String::new(),
        access_token: vault.seal(&aad("access_token"), &Secret::from("IGQVJ-plain-access")),
        refresh_token: None,
        access_expires_at: Timestamp(0),
        refresh_expires_at: None,
        next_refresh_at: None,
    };
    let id = db.store.upsert_account(&account, Timestamp(0)).await.unwrap().id;

    let env = [("DATABASE_URL", db.url.as_str()), ("ENCRYPTION_KEY", new[0].1.as_str())];
    let (status, _, err) = run(dir.path(), &["keys", "rotate"], &env);
    assert!(!status.success() && err.contains("could not be opened"), "without the old key: {err}");

    let env = [env[0], env[1], ("ENCRYPTION_KEYS_PREVIOUS", old[0].1.as_str())];
    let (status, _, err) = run(dir.path(), &["keys", "rotate", "--batch", "1"], &env);
    assert!(status.success(), "{err}");
    assert!(err.contains("reencrypted=1"), "{err}");
    assert_no_secret(&err, &[old[0].clone(), new[0].clone()]);
    let sealed = db.store.account(id).await.unwrap().unwrap().access_token.unwrap();
    let new_key = VaultKey::parse(&new[0].1).unwrap();
    assert_eq!(sealed.key_id(), new_key.id());
    let opened = Vault::new(new_key, vec![]).open(&aad("access_token"), &sealed).unwrap();
    assert_eq!(opened.expose(), "IGQVJ-plain-access");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_alone_serves_consent_for_both_platforms() {
    use testkit::platform::{account_id, consent, param};
    let dir = tempfile::tempdir().unwrap();
    let mut sb = Proc::spawn(dir.path(), &["sandbox", "--port", "0"], &[]);
    let line = sb.wait_for_line(Duration::from_secs(60), |l| l.contains("sandbox platform on http://"));
    let base: String = line.split("on ").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    let back = "http://127.0.0.1:9/cb";

    let ig = account_id(&base, "acme_studio").await;
    let url = format!("{base}/instagram/www/oauth/authorize?client_id=sandbox-instagram-app&redirect_uri={back}&response_type=code&scope=instagram_business_basic&state=s1");
    let allowed = consent(&url, &ig, true).await;
    assert!(allowed.as_str().starts_with(back));
    assert!(param(&allowed, "code").is_some());
    assert_eq!(param(&allowed, "state").as_deref(), Some("s1"));
    let denied = consent(&url, &ig, false).await;
    assert_eq!(param(&denied, "error").as_deref(), Some("access_denied"));

    let tt = account_id(&base, "dance.daily").await;
    let url = format!("{base}/tiktok/www/v2/auth/authorize/?client_key=sandbox-tiktok-app&redirect_uri={back}&response_type=code&scope=user.info.basic,video.list&state=s2");
    let allowed = consent(&url, &tt, true).await;
    assert!(param(&allowed, "code").is_some());
    assert_eq!(param(&allowed, "scopes").as_deref(), Some("user.info.basic,video.list"));
    let denied = consent(&url, &tt, false).await;
    assert_eq!(param(&denied, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&denied, "state").as_deref(), Some("s2"));

    // The control surface answers another process.
    let clock: serde_json::Value = reqwest::Client::new().post(format!("{base}/_admin/clock")).json(&serde_json::json!({"advance_secs": 3600})).send().await.unwrap().json().await.unwrap();
    assert_eq!(clock["offset_ms"], 3_600_000);
    sb.signal("TERM");
    assert!(sb.wait_exit(Duration::from_secs(30)).0.success());
}

/// An operator who configured one platform and forgot the other gets a refusal, not a
/// simulated TikTok; asked for, the sandbox's control surface still needs its token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_uses_the_sandbox_only_when_asked_and_guards_its_control_surface() {
    let db = TestDb::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let keys = generated_keys(dir.path());
    let mut env = env_of(&keys);
    env.extend([
        ("DATABASE_URL", db.url.as_str()),
        ("INSTAGRAM_CLIENT_ID", "ig-app"),
        ("INSTAGRAM_CLIENT_SECRET", "ig-secret"),
        ("INSTAGRAM_REDIRECT_URI", "https://app.example.com/api/v1/social-media/instagram/callback"),
    ]);
    let (status, out, err) = run(dir.path(), &["api"], &env);
    assert!(!status.success(), "no TikTok credentials and no SANDBOX=true must stop start-up");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("TIKTOK_CLIENT_KEY, TIKTOK_CLIENT_SECRET, TIKTOK_REDIRECT_URI not set") && err.contains("SANDBOX=true"), "{err}");
    assert!(out.is_empty(), "{out}");

    env.extend([("SANDBOX", "true"), ("SANDBOX_ADMIN_TOKEN", "the-admin-token")]);
    let mut api = Proc::spawn(dir.path(), &["api"], &env);
    let url = api.wait_for_url();
    let http = reqwest::Client::new();
    let settings = format!("{url}/sandbox/_admin/settings");
    let anonymous = http.get(&settings).send().await.unwrap();
    assert_eq!(anonymous.status(), 401, "the control surface without the token");
    assert_eq!(http.get(&settings).bearer_auth("a-guess").send().await.unwrap().status(), 401, "with a wrong token");
    assert_eq!(http.get(format!("{url}/sandbox/_admin/secrets")).send().await.unwrap().status(), 401, "the issued secrets");
    assert_eq!(http.get(&settings).bearer_auth("the-admin-token").send().await.unwrap().status(), 200, "with the token");
    // The simulated TikTok itself answers (its consent page), and the log says it is simulated.
    let consent = http.get(format!("{url}/sandbox/tiktok/www/v2/auth/authorize/?client_key=sandbox-tiktok-app")).send().await.unwrap();
    assert_ne!(consent.status(), 401, "only the control surface is guarded");
    api.wait_for_line(Duration::from_secs(10), |l| l.contains("using the sandbox platform") && l.contains("tiktok"));
    assert!(!api.output().contains("the-admin-token"), "the token never reaches the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_without_credentials_mounts_the_sandbox_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = Proc::spawn(dir.path(), &["up"], &[]);
    let url = up.wait_for_url();
    up.wait_for_line(Duration::from_secs(30), |l| l.contains("using the sandbox platform"));
    let accounts: serde_json::Value = reqwest::get(format!("{url}/sandbox/_admin/accounts")).await.unwrap().json().await.unwrap();
    assert!(accounts.as_array().unwrap().len() >= 6, "demo accounts are served at /sandbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_connects_a_sandbox_account_and_no_secret_reaches_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = Proc::spawn(dir.path(), &["up"], &[("RUST_LOG", "debug,sqlx=info,hyper=info,reqwest=info,h2=info,rustls=info")]);
    let url = up.wait_for_url();
    assert!(up.output().contains(&format!("{url}/demo")) && up.output().contains(&format!("{url}/docs")), "up prints where to start");
    let page = reqwest::get(format!("{url}/demo")).await.unwrap().text().await.unwrap();
    let token = page.split("name=\"socialsync-token\" content=\"").nth(1).and_then(|t| t.split('"').next()).expect("the demo page carries a token").to_owned();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let started: serde_json::Value = http
        .post(format!("{url}/api/v1/social-media/instagram/connect"))
        .bearer_auth(&token)
        .send().await.unwrap().json().await.unwrap();
    let account = testkit::platform::account_id(&format!("{url}/sandbox"), "acme_studio").await;
    let callback = testkit::platform::consent(started["authorization_url"].as_str().unwrap(), &account, true).await;
    let (code, state) = (testkit::platform::param(&callback, "code").unwrap(), testkit::platform::param(&callback, "state").unwrap());
    let back = http.get(callback.as_str()).send().await.unwrap();
    assert_eq!(back.status(), 303);
    let location = back.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&format!("{url}/demo?connect=pending")), "{location}");

    let accounts = || async {
        let list: serde_json::Value = http.get(format!("{url}/api/v1/social-media/accounts")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        list
    };
    testkit::eventually(Duration::from_secs(60), "the account connected and synced", || async { accounts().await[0]["last_synced_at"].is_string() }).await;
    let synced = accounts().await;
    assert_eq!((synced[0]["username"].as_str(), synced[0]["status"].as_str()), (Some("acme_studio"), Some("active")));

    up.signal("TERM");
    up.wait_exit(Duration::from_secs(30));
    let log = up.output();
    assert!(log.contains("account synced"), "the debug log is on");
    for (what, secret) in [("OAuth code", &code), ("OAuth state", &state), ("user token", &token)] {
        assert!(!log.contains(secret.as_str()), "the {what} appears in the log");
    }
}

/// `up`'s sandbox tells the app when a user revokes it, as Meta and TikTok do: a forged event is
/// refused and changes nothing; a real one, delivered twice, takes the account out of `active`
/// in about a second and notifies its user once; after it, no sync calls the platform for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_in_the_sandbox_reaches_the_account_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = Proc::spawn(dir.path(), &["up"], &[("PACING_TIKTOK_MS", "50")]);
    let url = up.wait_for_url();
    let page = reqwest::get(format!("{url}/demo")).await.unwrap().text().await.unwrap();
    let token = page.split("name=\"socialsync-token\" content=\"").nth(1).and_then(|t| t.split('"').next()).expect("a token").to_owned();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let api = |path: &str| {
        let req = http.get(format!("{url}/api/v1{path}")).bearer_auth(&token);
        async move { req.send().await.unwrap().json::<serde_json::Value>().await.unwrap() }
    };
    let admin = format!("{url}/sandbox/_admin");
    let patch = |path: String, body: serde_json::Value| {
        let req = http.patch(format!("{admin}/{path}")).json(&body);
        async move { assert!(req.send().await.unwrap().status().is_success()) }
    };

    let started: serde_json::Value = http.post(format!("{url}/api/v1/social-media/tiktok/connect")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let open_id = testkit::platform::account_id(&format!("{url}/sandbox"), "dance.daily").await;
    let callback = testkit::platform::consent(started["authorization_url"].as_str().unwrap(), &open_id, true).await;
    assert_eq!(http.get(callback.as_str()).send().await.unwrap().status(), 303);
    testkit::eventually(Duration::from_secs(60), "connected and synced", || async { api("/social-media/accounts").await[0]["last_synced_at"].is_string() }).await;
    let deliveries = || async { reqwest::get(format!("{admin}/deliveries")).await.unwrap().json::<Vec<serde_json::Value>>().await.unwrap() };
    let switches = format!("accounts/tiktok/{open_id}/switches");

    // Forged: refused, and the account stays active.
    patch("settings".into(), serde_json::json!({ "event_delivery": "bad_signature" })).await;
    patch(switches.clone(), serde_json::json!({ "consent_revoked": true })).await;
    testkit::eventually(Duration::from_secs(10), "the forged event answered", || async { deliveries().await.len() == 1 }).await;
    assert_eq!(deliveries().await[0]["status"], 401);
    assert_eq!(api("/social-media/accounts").await[0]["status"], "active");

    // Real, sent twice as a retrying platform does.
    patch(switches.clone(), serde_json::json!({ "consent_revoked": false })).await;
    patch("settings".into(), serde_json::json!({ "event_delivery": "duplicate" })).await;
    let revoked_at = std::time::Instant::now();
    patch(switches, serde_json::json!({ "consent_revoked": true })).await;
    testkit::eventually(Duration::from_secs(10), "the account out of active", || async { api("/social-media/accounts").await[0]["status"] == "revoked" }).await;
    println!("revoked in the sandbox → account revoked in {} ms", revoked_at.elapsed().as_millis());
    let account = &api("/social-media/accounts").await[0];
    assert_eq!(account["status_reason"], "the user disconnected the app in TikTok");
    testkit::eventually(Duration::from_secs(10), "both copies answered", || async { deliveries().await.len() == 3 }).await;
    assert!(deliveries().await[1..].iter().all(|d| d["status"] == 200), "{:?}", deliveries().await);
    testkit::eventually(Duration::from_secs(10), "one notification", || async { !api("/notifications").await.as_array().unwrap().is_empty() }).await;
    let notes = api("/notifications").await;
    assert_eq!(notes.as_array().unwrap().iter().map(|n| n["kind"].as_str().unwrap()).collect::<Vec<_>>(), ["access_revoked"]);

    // A sync asked for now skips it: the platform hears nothing more about the account.
    let calls = || async {
        let log: Vec<serde_json::Value> = reqwest::get(format!("{admin}/requests")).await.unwrap().json().await.unwrap();
        log.iter().filter(|e| e["account"] == open_id.as_str()).count()
    };
    let before = calls().await;
    let sync: serde_json::Value = http.post(format!("{url}/api/v1/social-media/accounts/{}/sync", account["id"])).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(sync["error"]["code"], "ACCOUNT_NOT_ACTIVE", "{sync}");
    assert_eq!(calls().await, before);
    up.signal("TERM");
    up.wait_exit(Duration::from_secs(30));
}

/// A user who deletes their Instagram account: Meta's data deletion callback (sent by `up`'s
/// sandbox) answers a status page, and the account's data is erased.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_deletion_erases_the_account_and_its_page_says_done() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = Proc::spawn(dir.path(), &["up"], &[("PACING_INSTAGRAM_MS", "50")]);
    let url = up.wait_for_url();
    let page = reqwest::get(format!("{url}/demo")).await.unwrap().text().await.unwrap();
    let token = page.split("name=\"socialsync-token\" content=\"").nth(1).and_then(|t| t.split('"').next()).expect("a token").to_owned();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let api = |path: String| {
        let req = http.get(format!("{url}/api/v1{path}")).bearer_auth(&token);
        async move { req.send().await.unwrap().json::<serde_json::Value>().await.unwrap() }
    };
    let admin = format!("{url}/sandbox/_admin");
    let started: serde_json::Value = http.post(format!("{url}/api/v1/social-media/instagram/connect")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let user_id = testkit::platform::account_id(&format!("{url}/sandbox"), "acme_studio").await;
    let callback = testkit::platform::consent(started["authorization_url"].as_str().unwrap(), &user_id, true).await;
    assert_eq!(http.get(callback.as_str()).send().await.unwrap().status(), 303);
    testkit::eventually(Duration::from_secs(60), "connected and synced", || async { api("/social-media/accounts".into()).await[0]["last_synced_at"].is_string() }).await;
    let id = api("/social-media/accounts".into()).await[0]["id"].as_i64().unwrap();
    assert!(api(format!("/social-media/accounts/{id}/stats")).await["posts_count"].as_i64().unwrap() > 0);

    let resp = http.patch(format!("{admin}/accounts/instagram/{user_id}/switches")).json(&serde_json::json!({ "account_deleted": true })).send().await.unwrap();
    assert!(resp.status().is_success());
    let deliveries = || async { reqwest::get(format!("{admin}/deliveries")).await.unwrap().json::<Vec<serde_json::Value>>().await.unwrap() };
    testkit::eventually(Duration::from_secs(10), "the callback answered", || async { !deliveries().await.is_empty() }).await;
    let answer = deliveries().await[0].clone();
    assert_eq!((answer["event"].as_str(), answer["status"].as_u64()), (Some("data_deletion"), Some(200)), "{answer}");
    let status_url = answer["answer"]["url"].as_str().expect("a status page").to_owned();
    let code = answer["answer"]["confirmation_code"].as_str().unwrap().to_owned();
    assert!(status_url.starts_with(&format!("{url}/deletion/")) && status_url.ends_with(&code), "{status_url}");
    testkit::eventually(Duration::from_secs(30), "the status page says done", || async {
        reqwest::get(&status_url).await.unwrap().text().await.unwrap().contains("data-state=\"done\"")
    })
    .await;
    let status_page = reqwest::get(&status_url).await.unwrap().text().await.unwrap();
    assert!(!status_page.contains("acme_studio") && !status_page.contains(&user_id), "the page shows the state only");
    assert_eq!(reqwest::get(format!("{url}/deletion/{}", "0".repeat(32))).await.unwrap().status(), 404);

    // Erased: no posts, no snapshots, no name, no platform id, no tokens.
    let stats = api(format!("/social-media/accounts/{id}/stats")).await;
    assert_eq!((stats["posts_count"].as_i64(), stats["latest"].is_null()), (Some(0), true), "{stats}");
    let gone = api("/social-media/accounts?status=disconnected".into()).await;
    assert_eq!((gone[0]["id"].as_i64(), gone[0]["username"].as_str()), (Some(id), Some("")), "{gone}");
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("data/socialsync.db").display())).await.unwrap();
    let (tokens, puid): (i64, String) = sqlx::query_as("SELECT (access_token_enc IS NOT NULL) + (refresh_token_enc IS NOT NULL), platform_user_id FROM social_accounts WHERE id = ?")
        .bind(id).fetch_one(&db).await.unwrap();
    assert_eq!((tokens, puid.as_str()), (0, format!("erased:{id}").as_str()));
    up.signal("TERM");
    up.wait_exit(Duration::from_secs(30));
}
