//! The platform clients: one [`PlatformClient`] trait, an implementation per platform.
//!
//! Every failure is classified once, here, into what the jobs branch on
//! ([`PlatformError`]): the user must reconnect (`Permanent`), try again later (`Transient`),
//! or the platform asks us to slow down (`RateLimited`). Error texts come from the platform's
//! message or our own words — never a URL (tokens travel in Instagram's query strings) and
//! never a token.

pub mod instagram;
pub mod tiktok;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;

use crate::{config::PlatformsConfig, domain::Platform, secret::Secret, store::Post};

/// What the jobs need to know about a failed platform call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    /// The grant is gone (revoked, expired beyond refresh, `invalid_grant`, Instagram 190):
    /// the user must connect again. Never retried.
    #[error("permanent platform error {code}: {message}")]
    Permanent { code: String, message: String },
    /// Network trouble, a timeout, a 5xx, or anything the platform marks transient.
    #[error("transient platform error: {0}")]
    Transient(String),
    /// Not yet: the call is refused until something the platform counts has passed (an
    /// Instagram token under 24 hours old cannot be refreshed, code 10). Nothing is wrong with
    /// the grant, and retrying soon cannot help.
    #[error("too early for the platform: {0}")]
    TooEarly(String),
    /// The platform asks us to slow down, with its hint when it gives one.
    #[error("rate limited by the platform (retry after {retry_after:?}): {message}")]
    RateLimited { retry_after: Option<Duration>, message: String },
}

impl PlatformError {
    /// `permanent`, `transient`, `too_early` or `rate_limited`: what `job_runs.error_class` records.
    pub fn class(&self) -> &'static str {
        match self {
            PlatformError::Permanent { .. } => "permanent",
            PlatformError::Transient(_) => "transient",
            PlatformError::TooEarly(_) => "too_early",
            PlatformError::RateLimited { .. } => "rate_limited",
        }
    }

    /// A transport failure, described without its URL.
    pub(crate) fn from_reqwest(e: reqwest::Error) -> Self {
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else if e.is_decode() || e.is_body() {
            "unreadable response"
        } else {
            "request failed"
        };
        PlatformError::Transient(format!("{what}: {}", e.without_url()))
    }
}

/// Tokens a code exchange or a refresh produced.
#[derive(Clone, Debug)]
pub struct TokenGrant {
    pub access_token: Secret,
    pub expires_in: Duration,
    /// TikTok only; store it every time (it may have rotated).
    pub refresh_token: Option<Secret>,
    pub refresh_expires_in: Option<Duration>,
    /// Instagram `user_id`, TikTok `open_id`.
    pub platform_user_id: String,
    /// Comma-separated scopes actually granted.
    pub scopes: String,
}

/// An account's profile and numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    pub platform_user_id: String,
    pub username: String,
    pub display_name: Option<String>,
    pub followers: Option<i64>,
    pub following: Option<i64>,
    pub media_count: Option<i64>,
    pub likes: Option<i64>,
}

/// One page of posts and where the next starts.
#[derive(Clone, Debug)]
pub struct PostsPage {
    pub posts: Vec<Post>,
    pub next: Option<String>,
}

/// One platform's API, as the jobs use it.
#[async_trait]
pub trait PlatformClient: Send + Sync {
    fn platform(&self) -> Platform;

    /// The host a sync's calls go to (Instagram's Graph API, TikTok's open API): what
    /// [`Clients::warm`] opens a connection to.
    fn api_url(&self) -> &str;

    /// Where to send the user's browser. `pkce_challenge` is used where the platform supports it.
    fn authorization_url(&self, state: &str, pkce_challenge: Option<&str>) -> String;

    /// Whether connects should send a PKCE challenge.
    fn uses_pkce(&self) -> bool;

    /// Authorization code → tokens (Instagram: the short-lived token is exchanged for a
    /// long-lived one in the same call).
    async fn exchange_code(&self, code: &Secret, pkce_verifier: Option<&Secret>) -> Result<TokenGrant, PlatformError>;

    /// A fresh token: Instagram refreshes the access token, TikTok spends the refresh token.
    async fn refresh(&self, access: &Secret, refresh: Option<&Secret>) -> Result<TokenGrant, PlatformError>;

    /// The profile. `scopes` (as granted) decides which fields may be asked for.
    async fn profile(&self, access: &Secret, scopes: &str) -> Result<Profile, PlatformError>;

    /// One page of posts, newest first; `cursor` is the previous page's `next`.
    async fn posts_page(&self, access: &Secret, scopes: &str, cursor: Option<&str>) -> Result<PostsPage, PlatformError>;

    /// Pages through posts until there are no more or `cap` are read.
    async fn posts(&self, access: &Secret, scopes: &str, cap: usize) -> Result<Vec<Post>, PlatformError> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        while all.len() < cap {
            let page = self.posts_page(access, scopes, cursor.as_deref()).await?;
            all.extend(page.posts);
            match page.next {
                // A cursor that does not move would loop forever.
                Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
                _ => break,
            }
        }
        all.truncate(cap);
        Ok(all)
    }

    /// Tells the platform to forget the grant, where it has a call for that.
    async fn revoke(&self, _access: &Secret) -> Result<(), PlatformError> {
        Ok(())
    }
}

/// The two clients, sharing one connection pool.
#[derive(Clone)]
pub struct Clients {
    pub instagram: instagram::Instagram,
    pub tiktok: tiktok::Tiktok,
    http: reqwest::Client,
    warm_timeout: Duration,
    /// Per platform (indexed by `Platform as usize`).
    warmth: Arc<[Warmth; 2]>,
}

#[derive(Default)]
struct Warmth {
    /// One warm-up at a time: the syncs that find it under way wait for its connection.
    warming: tokio::sync::Mutex<()>,
    /// When a sync or a warm-up last used the connection.
    last_used: Mutex<Option<Instant>>,
}

/// A connection to a platform unused this long may have been closed by the platform's front
/// end (idle keep-alive timeouts are commonly 60 s and more), so [`Clients::warm`] opens one.
const WARM_FOR: Duration = Duration::from_secs(30);

impl Clients {
    pub fn new(cfg: &PlatformsConfig) -> Clients {
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.request_timeout)
            .user_agent(concat!("socialsync/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds");
        Clients {
            instagram: instagram::Instagram::new(http.clone(), cfg.instagram.clone()),
            tiktok: tiktok::Tiktok::new(http.clone(), cfg.tiktok.clone()),
            http,
            warm_timeout: cfg.connect_timeout,
            warmth: Arc::default(),
        }
    }

    pub fn get(&self, platform: Platform) -> &dyn PlatformClient {
        match platform {
            Platform::Instagram => &self.instagram,
            Platform::Tiktok => &self.tiktok,
        }
    }

    /// Makes sure this process holds an open connection to `platform`'s API before a paced
    /// start: a sync's first call goes out in its pacing slot, and a connection opened there
    /// (a TCP and a TLS handshake, tens of milliseconds to a real platform; on a loaded
    /// machine, once 26 ms even to the sandbox on localhost) delays it past the slot's margin,
    /// so the platform sees it closer to the next start than the spacing. When no sync has
    /// used the connection for [`WARM_FOR`], one `HEAD` of the API's root (no token, answered
    /// with an error the client ignores) opens it; its answer leaves it in the pool for the
    /// sync. Best effort: a failure only means the sync connects as it did before.
    pub async fn warm(&self, platform: Platform) {
        let warmth = &self.warmth[platform as usize];
        let _one = warmth.warming.lock().await;
        let cold = warmth.last_used.lock().expect("not poisoned").is_none_or(|t| t.elapsed() >= WARM_FOR);
        if !cold {
            return;
        }
        let started = Instant::now();
        let answer = self.http.head(self.get(platform).api_url()).timeout(self.warm_timeout).send().await;
        tracing::debug!(
            target: "data_sync", %platform, took_ms = started.elapsed().as_millis() as u64, ok = answer.is_ok(),
            "opened a connection to the platform before a paced start"
        );
        self.used(platform);
    }

    /// A sync's calls went through `platform`'s connection just now.
    pub fn used(&self, platform: Platform) {
        *self.warmth[platform as usize].last_used.lock().expect("not poisoned") = Some(Instant::now());
    }
}

/// Reads a `Retry-After` header given in seconds.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok().map(Duration::from_secs)
}
