#![allow(dead_code, unused_imports)] // each test file uses its own part
//! What the API's test files share: an API server on a fresh database, calls to it, and the
//! shape of its errors.


use std::{sync::Arc, time::Duration};

use api::{ApiConfig, ApiState, auth::Jwt, limits::Policies};
use jobs::{Secret, Store, Timestamp, Vault, VaultKey, clients::Clients, job::{JobContext, JobSettings}};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{TestDb, both_backends, platform::{SandboxServer, param}};
use tokio_util::sync::CancellationToken;

pub const JWT_SECRET: &str = "jwt-secret-for-the-api-tests";
pub const CRON_SECRET: &str = "cron-secret-for-the-api-tests";

pub struct App {
    pub url: String,
    pub db: Arc<TestDb>,
    pub vault: Vault,
    pub sb: SandboxServer,
    pub jwt: Jwt,
    pub http: reqwest::Client,
    pub stop: CancellationToken,
    pub platforms: jobs::config::PlatformsConfig,
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub async fn start(db: TestDb, tweak: impl FnOnce(&mut ApiConfig)) -> App {
    let store = db.store.clone();
    start_on(Arc::new(db), store, tweak).await
}

/// A server on `db` through its own connection pool `store` (as another process would be).
pub async fn start_on(db: Arc<TestDb>, store: Store, tweak: impl FnOnce(&mut ApiConfig)) -> App {
    let sb = SandboxServer::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let callback = |p: &str| format!("{url}/api/v1/social-media/{p}/callback");
    let mut platforms = sb.platforms_with_redirect(Duration::from_secs(5), &callback("instagram"));
    platforms.tiktok = sb.platforms_with_redirect(Duration::from_secs(5), &callback("tiktok")).tiktok;
    let vault = Vault::new(VaultKey::parse(VaultKey::generate().expose()).unwrap(), vec![]);
    let jobs = JobContext {
        store: store.clone(),
        vault: vault.clone(),
        clients: Clients::new(&platforms),
        clock: Arc::new(jobs::SystemClock),
        settings: JobSettings::default(),
        worker: "api-test".into(),
        http: reqwest::Client::new(),
        local_gates: Default::default(),
        paused: Default::default(),
    };
    let jwt = Jwt::new(&Secret::from(JWT_SECRET));
    let mut config = ApiConfig {
        jobs,
        jwt: Some(jwt.clone()),
        cron_secret: Some(Secret::from(CRON_SECRET)),
        service_token: Some(Secret::from("service-token")),
        policies: Policies::with_overrides("general=10000/15m").unwrap(),
        trusted_proxies: vec![],
        frontend_url: "https://app.example.com/settings/social".into(),
        public_url: url.clone(),
        keep_history_on_disconnect: true,
        webhook_tolerance_secs: 300,
        max_body_bytes: 4096,
        demo_user: None,
        dashboard: None,
    };
    tweak(&mut config);
    let expected_queue_version = migrations::queue_latest(store.backend_name() == "postgres");
    let state = ApiState { store, expected_schema_version: migrations::latest_version(), expected_queue_version, sandbox: None, metrics: None, config: Arc::new(config), guard_hits: Default::default() };
    let stop = CancellationToken::new();
    tokio::spawn(api::serve(state, listener, stop.clone().cancelled_owned()));
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    App { url, db, vault, sb, jwt, http, stop, platforms }
}

impl App {
    pub async fn call(&self, method: Method, path: &str, user: Option<&str>, body: Option<Value>) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(user) = user {
            req = req.bearer_auth(self.jwt.issue(user, 600));
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let (status, headers) = (resp.status(), resp.headers().clone());
        let text = resp.text().await.unwrap();
        let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status} is not JSON: {text}")) };
        (status, body, headers)
    }

    /// Starts a connect for `user` and gives consent at the sandbox as `username`; returns the
    /// platform's redirect to our callback.
    pub async fn consent(&self, user: &str, platform: &str, username: &str, allow: bool) -> url::Url {
        let (status, body, _) = self.call(Method::POST, &format!("/api/v1/social-media/{platform}/connect"), Some(user), None).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["state_expires_at"].as_str().unwrap().ends_with('Z'));
        let account = self.sb.account_id(username).await;
        self.sb.consent(body["authorization_url"].as_str().unwrap(), &account, allow).await
    }

    /// Follows a redirect to our callback; returns the status, the body, and where it sends the browser.
    pub async fn follow(&self, redirect: &url::Url) -> (StatusCode, Value, Option<url::Url>) {
        let path = &redirect.as_str()[self.url.len()..];
        let (status, body, headers) = self.call(Method::GET, path, None, None).await;
        (status, body, headers.get("location").map(|l| url::Url::parse(l.to_str().unwrap()).unwrap()))
    }
}

pub fn assert_error(status: StatusCode, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status.as_u16(), want_status, "{body}");
    assert_eq!(body["error"]["code"], want_code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

pub async fn account(app: &App, user: &str, puid: &str) -> i64 {
    use jobs::{Aad, Platform, Timestamp, store::NewAccount};
    let now = Timestamp::now();
    let a = NewAccount {
        user_id: user.into(),
        platform: Platform::Tiktok,
        platform_user_id: puid.into(),
        username: format!("{puid}_name"),
        display_name: None,
        scopes: "user.info.basic".into(),
        access_token: app.vault.seal(&Aad::account(Platform::Tiktok, puid, "access_token"), &Secret::from(format!("act.secret.{puid}"))),
        refresh_token: None,
        access_expires_at: now.plus(Duration::from_secs(86_400)),
        refresh_expires_at: None,
        next_refresh_at: None,
    };
    app.db.store.upsert_account(&a, now).await.unwrap().id.0
}
