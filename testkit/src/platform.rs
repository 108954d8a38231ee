//! A sandbox platform on a real port for a test, and its control surface over HTTP — the
//! same calls a test in another process would make.

use std::{sync::Arc, time::Duration};

use jobs::{
    AccountId, Platform, Secret, Timestamp, Vault,
    clients::{Clients, tiktok},
    config::{InstagramConfig, PlatformCredentials, PlatformsConfig, TiktokConfig},
    store::NewAccount,
    vault::Aad,
};
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub use sandbox::{Sandbox, Settings as SandboxSettings};

/// A running sandbox; stops when dropped.
pub struct SandboxServer {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// The in-process world, when this test started the sandbox itself.
    pub sandbox: Option<Sandbox>,
    http: reqwest::Client,
    _stop: Option<oneshot::Sender<()>>,
}

pub const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";

impl SandboxServer {
    pub async fn start() -> SandboxServer {
        Self::start_with(SandboxSettings::default()).await
    }

    pub async fn start_with(settings: SandboxSettings) -> SandboxServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let sandbox = Sandbox::new(settings);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(sandbox::serve(sandbox.clone(), listener, async {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        SandboxServer { url, sandbox: Some(sandbox), http, _stop: Some(stop) }
    }

    /// A sandbox another process serves at `url` (e.g. `socialsync sandbox`).
    pub fn remote(url: &str) -> SandboxServer {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        SandboxServer { url: url.trim_end_matches('/').to_owned(), sandbox: None, http, _stop: None }
    }

    /// Client configuration pointing at this sandbox, with `timeout` per request.
    pub fn platforms(&self, timeout: Duration) -> PlatformsConfig {
        self.platforms_with_redirect(timeout, REDIRECT_URI)
    }

    pub fn platforms_with_redirect(&self, timeout: Duration, redirect_uri: &str) -> PlatformsConfig {
        let creds = |id: &str, secret: &str| PlatformCredentials {
            client_id: id.into(),
            client_secret: Secret::from(secret),
            redirect_uri: redirect_uri.into(),
        };
        PlatformsConfig {
            instagram: InstagramConfig::sandbox(&self.url, creds(sandbox::INSTAGRAM_CLIENT_ID, sandbox::INSTAGRAM_CLIENT_SECRET)),
            tiktok: TiktokConfig::sandbox(&self.url, creds(sandbox::TIKTOK_CLIENT_KEY, sandbox::TIKTOK_CLIENT_SECRET)),
            connect_timeout: Duration::from_secs(2),
            request_timeout: timeout,
        }
    }

    /// Consent through this sandbox's page; see [`consent`].
    pub async fn consent(&self, authorize_url: &str, account: &str, allow: bool) -> url::Url {
        consent(authorize_url, account, allow).await
    }

    /// The id of a seeded demo account by username.
    pub async fn account_id(&self, username: &str) -> String {
        account_id(&self.url, username).await
    }

    pub async fn admin_get(&self, path: &str) -> Value {
        let resp = self.http.get(format!("{}/_admin/{path}", self.url)).send().await.unwrap();
        assert!(resp.status().is_success(), "GET _admin/{path}: {}", resp.status());
        resp.json().await.unwrap()
    }

    /// The sequence number of the last request the sandbox has logged (0 before any): what
    /// [`SandboxServer::arrivals_us`] reads after.
    pub async fn last_request_seq(&self) -> u64 {
        let log = self.admin_get("requests?limit=100000").await;
        log.as_array().expect("a log").last().map_or(0, |e| e["seq"].as_u64().expect("a sequence number"))
    }

    /// When each request to `endpoint` logged after request `after` arrived, in microseconds of
    /// real time, earliest first. A sync starts with its profile read (TikTok's `user/info`):
    /// these are the starts pacing spaces, as the platform saw them.
    pub async fn arrivals_us(&self, endpoint: &str, after: u64) -> Vec<i64> {
        let log = self.admin_get(&format!("requests?after={after}&limit=100000")).await;
        let arrivals = log.as_array().expect("a log").iter().filter(|e| e["endpoint"] == endpoint);
        let mut at: Vec<i64> = arrivals.map(|e| e["real_us"].as_i64().expect("an arrival time")).collect();
        at.sort_unstable();
        at
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let resp = self.http.request(method, format!("{}/_admin/{path}", self.url)).json(&body).send().await.unwrap();
        assert!(resp.status().is_success(), "_admin/{path}: {}", resp.status());
        resp.json().await.unwrap()
    }

    pub async fn advance_clock(&self, secs: i64) {
        self.admin(reqwest::Method::POST, "clock", json!({ "advance_secs": secs })).await;
    }

    pub async fn settings(&self, patch: Value) {
        self.admin(reqwest::Method::PATCH, "settings", patch).await;
    }

    pub async fn switches(&self, platform: &str, account: &str, patch: Value) {
        self.admin(reqwest::Method::PATCH, &format!("accounts/{platform}/{account}/switches"), patch).await;
    }

    pub async fn faults(&self, faults: Value) {
        self.admin(reqwest::Method::PUT, "faults", faults).await;
    }

    /// Calls counted for `platform:endpoint:account`.
    pub async fn counter(&self, platform: &str, endpoint: &str, account: &str) -> u64 {
        self.admin_get("counters").await[format!("{platform}:{endpoint}:{account}")].as_u64().unwrap_or(0)
    }
}

/// Opens the consent page at `authorize_url` as a browser would, picks `account`, clicks Allow
/// or Deny, and returns where the platform redirects the browser.
pub async fn consent(authorize_url: &str, account: &str, allow: bool) -> url::Url {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = http.get(authorize_url).send().await.unwrap();
    assert_eq!(page.status(), 200, "the consent page loads");
    let html = page.text().await.unwrap();
    assert!(html.contains("id=\"allow\"") && html.contains("id=\"deny\""), "Allow and Deny buttons");
    let mut form: Vec<(String, String)> = hidden_inputs(&html);
    form.push(("account".into(), account.into()));
    form.push(("decision".into(), if allow { "allow" } else { "deny" }.into()));
    let action = authorize_url.split('?').next().unwrap();
    let resp = http.post(action).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), 302, "the decision redirects");
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    url::Url::parse(&location).unwrap()
}

/// The id of a demo account by username, from the sandbox at `base`'s control surface.
pub async fn account_id(base: &str, username: &str) -> String {
    let list: Value = reqwest::get(format!("{base}/_admin/accounts")).await.unwrap().json().await.unwrap();
    list.as_array().unwrap().iter().find(|a| a["username"] == username).unwrap_or_else(|| panic!("no account {username}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    html.split("<input type=\"hidden\" ")
        .skip(1)
        .filter_map(|chunk| {
            let name = chunk.split("name=\"").nth(1)?.split('"').next()?;
            let value = chunk.split("value=\"").nth(1)?.split('"').next()?;
            let unescape = |s: &str| s.replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&#39;", "'").replace("&amp;", "&");
            Some((name.to_owned(), unescape(value)))
        })
        .collect()
}

/// A query parameter of a redirect.
pub fn param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// Creates `n` TikTok accounts in the sandbox (with `posts` videos each), connects each
/// (consent + code exchange, 16 at a time), and stores them in `store` as the connect job
/// would, tokens sealed by `vault`. Returns each account's id and platform user id.
pub async fn connected_accounts_with(store: &jobs::Store, sb: &SandboxServer, vault: &Vault, n: usize, posts: usize) -> Vec<(AccountId, String)> {
    connected_accounts_on(store, sb, vault, Platform::Tiktok, n, posts).await
}

/// [`connected_accounts_with`] on either platform: usernames `fleet{i}` (TikTok) or
/// `fleet_ig{i}` (Instagram), of users `user{i}`.
pub async fn connected_accounts_on(store: &jobs::Store, sb: &SandboxServer, vault: &Vault, platform: Platform, n: usize, posts: usize) -> Vec<(AccountId, String)> {
    let clients = Arc::new(Clients::new(&sb.platforms(Duration::from_secs(10))));
    let gate = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (clients, gate, store, vault) = (clients.clone(), gate.clone(), store.clone(), vault.clone());
        let admin = SandboxServer::remote(&sb.url);
        tasks.spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            let username = match platform {
                Platform::Tiktok => format!("fleet{i}"),
                Platform::Instagram => format!("fleet_ig{i}"),
            };
            let acct = admin.admin(reqwest::Method::POST, "accounts", json!({ "platform": platform.as_str(), "username": username, "posts": posts })).await;
            let puid = acct["id"].as_str().unwrap().to_owned();
            let client = clients.get(platform);
            let verifier = client.uses_pkce().then(tiktok::pkce_verifier);
            let url = client.authorization_url("s", verifier.as_ref().map(tiktok::pkce_challenge).as_deref());
            let redirect = admin.consent(&url, &puid, true).await;
            let code = jobs::Secret::new(param(&redirect, "code").unwrap());
            let grant = client.exchange_code(&code, verifier.as_ref()).await.unwrap();
            let now = Timestamp::now();
            let aad = |f| Aad::account(platform, &puid, f);
            let new = NewAccount {
                user_id: format!("user{i}"),
                platform,
                platform_user_id: puid.clone(),
                username,
                display_name: None,
                scopes: grant.scopes.clone(),
                access_token: vault.seal(&aad("access_token"), &grant.access_token),
                refresh_token: grant.refresh_token.as_ref().map(|r| vault.seal(&aad("refresh_token"), r)),
                access_expires_at: now.plus(grant.expires_in),
                refresh_expires_at: None,
                next_refresh_at: None,
            };
            let a = store.upsert_account(&new, now).await.unwrap();
            (i, a.id, puid)
        });
    }
    let mut out: Vec<(usize, AccountId, String)> = tasks.join_all().await;
    out.sort_by_key(|(i, ..)| *i);
    out.into_iter().map(|(_, id, puid)| (id, puid)).collect()
}
