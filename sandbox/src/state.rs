//! The sandbox's world: accounts, apps, codes, tokens, settings, clock, counters — in memory.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::demo;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Net {
    Instagram,
    Tiktok,
}

/// TikTok's refresh-token rotation (platform-spec.md: a setting).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rotation {
    /// The old refresh token dies at once; reusing it is `invalid_grant`.
    Strict,
    /// The old refresh token keeps working for `rotation_grace_secs`.
    Grace,
    /// Refresh tokens never rotate.
    None,
}

/// Everything the spec marks "(setting)", plus the knobs tests turn. All changeable over HTTP.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Instagram code exchange answers `{"access_token",…}` (false) or `{"data":[{…}]}` (true).
    pub instagram_wrapped_token_response: bool,
    /// Whether an Instagram token stays valid after it was refreshed.
    pub instagram_refresh_keeps_old_token: bool,
    /// HTTP status of Instagram throttling errors (400 or 403).
    pub instagram_throttle_status: u16,
    /// Instagram calls per account per hour that count as 100 % usage.
    pub instagram_calls_per_hour: u32,
    pub tiktok_rotation: Rotation,
    pub tiktok_rotation_grace_secs: u64,
    pub tiktok_access_ttl_secs: u64,
    pub tiktok_refresh_ttl_secs: u64,
    /// HTTP status of TikTok OAuth errors (the real one varies).
    pub tiktok_oauth_error_status: u16,
    /// TikTok requests per endpoint per app in any 60-second window.
    pub tiktok_requests_per_minute: u32,
    /// Whether a TikTok 429 carries a Retry-After header.
    pub tiktok_retry_after: bool,
    /// Posts given to each new account.
    pub posts_per_account: u32,
    /// Where Meta's deauthorize callback goes when an Instagram user revokes (none: not sent).
    pub instagram_deauthorize_url: Option<String>,
    /// Where Meta's data deletion callback goes when an Instagram user deletes their account.
    pub instagram_data_deletion_url: Option<String>,
    /// Where TikTok's webhook goes when a TikTok user revokes (none: not sent).
    pub tiktok_webhook_url: Option<String>,
    /// How those events are sent: as the platform would, or wrong on purpose.
    pub event_delivery: EventDelivery,
}

/// How the sandbox sends its events (platform-spec.md, "Events the platforms send").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventDelivery {
    #[default]
    Normal,
    /// Signed with a wrong secret.
    BadSignature,
    /// Signed ten minutes ago (TikTok's timestamp; Meta's `issued_at`).
    Stale,
    /// Sent twice, as a platform retrying does.
    Duplicate,
}

/// One event the sandbox sent, and what the app answered.
#[derive(Clone, Debug, Serialize)]
pub struct Delivery {
    pub seq: u64,
    pub net: Net,
    /// The account it is about.
    pub account: String,
    pub event: &'static str,
    pub url: String,
    /// The app's HTTP status, or none when the request failed.
    pub status: Option<u16>,
    /// The app's JSON answer (Meta shows the user a data deletion's `url` and code from it).
    pub answer: Option<serde_json::Value>,
    pub error: Option<String>,
    /// Real time it was sent, ms since the epoch.
    pub sent_ms: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            instagram_wrapped_token_response: false,
            instagram_refresh_keeps_old_token: true,
            instagram_throttle_status: 400,
            instagram_calls_per_hour: 200,
            tiktok_rotation: Rotation::Strict,
            tiktok_rotation_grace_secs: 60,
            tiktok_access_ttl_secs: 86_400,
            tiktok_refresh_ttl_secs: 365 * 86_400,
            tiktok_oauth_error_status: 400,
            tiktok_requests_per_minute: 600,
            tiktok_retry_after: false,
            posts_per_account: 250,
            instagram_deauthorize_url: None,
            instagram_data_deletion_url: None,
            tiktok_webhook_url: None,
            event_delivery: EventDelivery::Normal,
        }
    }
}

/// Per-account switches a test flips.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Switches {
    /// The user removed the app (Instagram 190/460 after, TikTok invalid token / invalid_grant).
    pub consent_revoked: bool,
    /// The user changed their password (Instagram 190/460).
    pub password_changed: bool,
    /// The user deleted their account: as `consent_revoked` for the API, and the platform
    /// sends the app its deletion event (Meta's data deletion callback; TikTok's reason 2).
    pub account_deleted: bool,
    /// Scopes the user declines at consent.
    pub declined_scopes: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Post {
    pub id: String,
    pub caption: String,
    pub media_type: &'static str,
    /// Milliseconds since the epoch.
    pub created_ms: i64,
    pub likes: i64,
    pub comments: i64,
    pub views: i64,
    pub shares: i64,
    pub duration: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Account {
    pub net: Net,
    /// Instagram `user_id` / TikTok `open_id`.
    pub id: String,
    /// Instagram's app-scoped `id` / TikTok's `union_id`.
    pub alt_id: String,
    pub username: String,
    pub name: String,
    pub followers: i64,
    pub following: i64,
    pub likes: i64,
    pub switches: Switches,
    #[serde(skip)]
    pub posts: Vec<Post>,
    pub post_count: usize,
}

#[derive(Clone, Debug)]
pub struct Code {
    pub net: Net,
    pub account: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub challenge: Option<String>,
    pub expires_ms: i64,
    pub used: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    InstagramShort,
    InstagramLong,
    TiktokAccess,
    TiktokRefresh,
}

#[derive(Clone, Debug)]
pub struct Token {
    pub kind: TokenKind,
    pub account: String,
    pub scopes: Vec<String>,
    pub issued_ms: i64,
    pub expires_ms: i64,
    /// Dead from this instant on (revoked, rotated away, replaced).
    pub dead_from_ms: Option<i64>,
}

/// One request as the platform saw it (never its query string: tokens travel there).
#[derive(Clone, Debug, Serialize)]
pub struct LoggedRequest {
    pub seq: u64,
    /// When it arrived, on the sandbox clock, ms since the epoch.
    pub at_ms: i64,
    /// When it arrived, on the real clock, ms since the epoch.
    pub real_ms: i64,
    /// The same in microseconds (what pacing measurements read: a gap of 49.9 ms is one).
    pub real_us: i64,
    pub method: String,
    pub path: String,
    pub endpoint: String,
    pub account: Option<String>,
    pub status: u16,
    /// The client's address and port: which connection it came over.
    pub peer: Option<String>,
}

/// An injected fault for every path that starts with `path_prefix` (relative to the sandbox
/// root, e.g. `tiktok/open/v2/user/info/`; empty for every route).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Fault {
    pub path_prefix: String,
    /// Share of requests answered with a 5xx, 0.0–1.0.
    pub error_rate: f64,
    pub latency_ms: u64,
    /// Never answer (the client's timeout must fire).
    pub hang: bool,
    /// The first this many matching requests pass untouched (e.g. 1 on a paged list: the first
    /// page is served, later ones fail — a failure half-way through).
    pub pass_first: u64,
    /// Matching requests seen so far.
    #[serde(skip)]
    pub matched: u64,
}

pub struct State {
    pub settings: Settings,
    /// Added to the real clock; moved by `POST /_admin/clock`.
    pub clock_offset_ms: i64,
    pub accounts: HashMap<(Net, String), Account>,
    pub codes: HashMap<String, Code>,
    pub tokens: HashMap<String, Token>,
    pub faults: Vec<Fault>,
    /// `"{net}:{endpoint}:{account}"` → calls.
    pub counters: HashMap<String, u64>,
    pub log: VecDeque<LoggedRequest>,
    pub next_seq: u64,
    /// Per TikTok endpoint: real-clock instants of recent requests (sliding window).
    pub tiktok_windows: HashMap<String, VecDeque<i64>>,
    /// Per Instagram account: sandbox-clock instants of calls in the last hour.
    pub instagram_usage: HashMap<String, VecDeque<i64>>,
    pub fault_counter: u64,
    /// The events sent, oldest first.
    pub deliveries: Vec<Delivery>,
}

/// The request log keeps this many entries.
pub const LOG_CAPACITY: usize = 100_000;

impl State {
    pub fn new(settings: Settings) -> State {
        let mut s = State {
            settings,
            clock_offset_ms: 0,
            accounts: HashMap::new(),
            codes: HashMap::new(),
            tokens: HashMap::new(),
            faults: vec![],
            counters: HashMap::new(),
            log: VecDeque::new(),
            next_seq: 1,
            tiktok_windows: HashMap::new(),
            instagram_usage: HashMap::new(),
            fault_counter: 0,
            deliveries: Vec::new(),
        };
        demo::seed(&mut s);
        s
    }

    /// The sandbox clock, ms since the epoch.
    pub fn now_ms(&self) -> i64 {
        real_now_ms() + self.clock_offset_ms
    }

    pub fn account(&self, net: Net, id: &str) -> Option<&Account> {
        self.accounts.get(&(net, id.to_owned()))
    }

    /// A live token of `kinds`, or why not. Expired and dead tokens are told apart because
    /// the platforms answer them differently.
    pub fn token(&self, value: &str, kinds: &[TokenKind]) -> Result<&Token, TokenProblem> {
        let t = self.tokens.get(value).filter(|t| kinds.contains(&t.kind)).ok_or(TokenProblem::Unknown)?;
        let now = self.now_ms();
        let acct = self.account(net_of(t.kind), &t.account).ok_or(TokenProblem::Unknown)?;
        if acct.switches.consent_revoked || acct.switches.password_changed || acct.switches.account_deleted {
            return Err(TokenProblem::Invalidated);
        }
        if t.dead_from_ms.is_some_and(|d| d <= now) {
            return Err(TokenProblem::Dead);
        }
        if t.expires_ms <= now {
            return Err(TokenProblem::Expired(t.expires_ms));
        }
        Ok(t)
    }

    pub fn count(&mut self, net: Net, endpoint: &str, account: &str) {
        let key = format!("{}:{endpoint}:{account}", net_name(net));
        *self.counters.entry(key).or_default() += 1;
    }

    pub fn issue(&mut self, kind: TokenKind, account: &str, scopes: Vec<String>, ttl: Duration) -> String {
        let now = self.now_ms();
        let prefix = match kind {
            TokenKind::InstagramShort => "IGQVJshort",
            TokenKind::InstagramLong => "IGQVJlong",
            TokenKind::TiktokAccess => "act.",
            TokenKind::TiktokRefresh => "rft.",
        };
        let value = format!("{prefix}{}", random_token(24));
        let t = Token { kind, account: account.to_owned(), scopes, issued_ms: now, expires_ms: now + ttl.as_millis() as i64, dead_from_ms: None };
        self.tokens.insert(value.clone(), t);
        value
    }
}

#[derive(Debug)]
pub enum TokenProblem {
    Unknown,
    Expired(i64),
    Dead,
    Invalidated,
}

pub fn net_of(kind: TokenKind) -> Net {
    match kind {
        TokenKind::InstagramShort | TokenKind::InstagramLong => Net::Instagram,
        TokenKind::TiktokAccess | TokenKind::TiktokRefresh => Net::Tiktok,
    }
}

pub fn net_name(net: Net) -> &'static str {
    match net {
        Net::Instagram => "instagram",
        Net::Tiktok => "tiktok",
    }
}

pub fn real_now_ms() -> i64 {
    real_now_us().div_euclid(1000)
}

pub fn real_now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// URL-safe random text of `bytes` random bytes.
pub fn random_token(bytes: usize) -> String {
    use base64::Engine;
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("OS randomness");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}
