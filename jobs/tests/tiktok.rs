//! The TikTok client against the sandbox over real HTTP: every success path, every failure
//! class, rotation in all three modes, PKCE, and the sandbox's own rules.

use std::time::Duration;

use jobs::{
    Platform, Secret,
    clients::{Clients, PlatformClient, PlatformError, TokenGrant, tiktok},
};
use serde_json::json;
use testkit::platform::{SandboxServer, param};

const TIMEOUT: Duration = Duration::from_secs(5);

async fn setup() -> (SandboxServer, Clients) {
    let sb = SandboxServer::start().await;
    let clients = Clients::new(&sb.platforms(TIMEOUT));
    (sb, clients)
}

/// The whole connect with PKCE: consent as `username`, then the code exchange.
async fn connect(sb: &SandboxServer, tt: &dyn PlatformClient, username: &str) -> TokenGrant {
    let verifier = tiktok::pkce_verifier();
    let (code, _) = consent(sb, tt, username, Some(&verifier)).await;
    tt.exchange_code(&code, Some(&verifier)).await.unwrap()
}

async fn consent(sb: &SandboxServer, tt: &dyn PlatformClient, username: &str, verifier: Option<&Secret>) -> (Secret, String) {
    let account = sb.account_id(username).await;
    let challenge = verifier.map(tiktok::pkce_challenge);
    let redirect = sb.consent(&tt.authorization_url("st-2", challenge.as_deref()), &account, true).await;
    assert_eq!(param(&redirect, "state").as_deref(), Some("st-2"));
    (Secret::new(param(&redirect, "code").expect("a code")), param(&redirect, "scopes").unwrap_or_default())
}

fn permanent_code<T: std::fmt::Debug>(r: Result<T, PlatformError>) -> String {
    match r {
        Err(PlatformError::Permanent { code, .. }) => code,
        other => panic!("expected Permanent, got {other:?}"),
    }
}

#[tokio::test]
async fn connect_with_pkce_profile_and_all_videos() {
    let (sb, clients) = setup().await;
    let tt = &clients.tiktok;
    let account = sb.account_id("dance.daily").await;
    let grant = connect(&sb, tt, "dance.daily").await;
    assert_eq!(grant.platform_user_id, account);
    assert!(grant.access_token.expose().starts_with("act."));
    assert!(grant.refresh_token.as_ref().unwrap().expose().starts_with("rft."));
    assert_eq!(grant.expires_in, Duration::from_secs(86_400), "taken from expires_in");
    assert_eq!(grant.refresh_expires_in, Some(Duration::from_secs(365 * 86_400)));

    let profile = tt.profile(&grant.access_token, &grant.scopes).await.unwrap();
    assert_eq!((profile.username.as_str(), profile.followers, profile.media_count), ("dance.daily", Some(1_204_551), Some(250)));
    assert!(profile.likes.is_some());

    let videos = tt.posts(&grant.access_token, &grant.scopes, 10_000).await.unwrap();
    assert_eq!(videos.len(), 250, "short pages with has_more are followed");
    let mut ids: Vec<_> = videos.iter().map(|v| v.platform_post_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 250);
    assert!(videos.iter().all(|v| v.view_count.is_some() && v.published_at.is_some()));
    assert!(sb.counter("tiktok", "video/list", &account).await >= 13, "at most 20 a page");
}

#[tokio::test]
async fn pkce_is_checked_with_the_hex_rule() {
    let (sb, clients) = setup().await;
    let tt = &clients.tiktok;
    let verifier = tiktok::pkce_verifier();
    let (code, _) = consent(&sb, tt, "quickrecipes", Some(&verifier)).await;
    assert_eq!(permanent_code(tt.exchange_code(&code, Some(&tiktok::pkce_verifier())).await), "invalid_grant");
    let (code, _) = consent(&sb, tt, "quickrecipes", Some(&verifier)).await;
    assert_eq!(permanent_code(tt.exchange_code(&code, None).await), "invalid_grant");
    let (code, _) = consent(&sb, tt, "quickrecipes", Some(&verifier)).await;
    tt.exchange_code(&code, Some(&verifier)).await.unwrap();
    assert_eq!(permanent_code(tt.exchange_code(&code, Some(&verifier)).await), "invalid_grant", "codes are single-use");
}

#[tokio::test]
async fn redirect_uri_must_match() {
    let (sb, clients) = setup().await;
    let (code, _) = consent(&sb, &clients.tiktok, "quickrecipes", None).await;
    let other = Clients::new(&sb.platforms_with_redirect(TIMEOUT, "http://127.0.0.1:9/elsewhere"));
    assert_eq!(permanent_code(other.tiktok.exchange_code(&code, None).await), "invalid_request");
}

#[tokio::test]
async fn strict_rotation_kills_the_old_refresh_token() {
    let (sb, clients) = setup().await;
    let tt = &clients.tiktok;
    let account = sb.account_id("dance.daily").await;
    let g1 = connect(&sb, tt, "dance.daily").await;
    let g2 = tt.refresh(&g1.access_token, g1.refresh_token.as_ref()).await.unwrap();
    assert_ne!(g2.refresh_token, g1.refresh_token, "rotated");
    assert_eq!(permanent_code(tt.refresh(&g1.access_token, g1.refresh_token.as_ref()).await), "invalid_grant");
    tt.refresh(&g2.access_token, g2.refresh_token.as_ref()).await.expect("the new one works");
    assert_eq!(sb.counter("tiktok", "oauth/refresh", &account).await, 3, "every refresh call is counted");
}

#[tokio::test]
async fn grace_and_no_rotation() {
    let (sb, clients) = setup().await;
    let tt = &clients.tiktok;
    sb.settings(json!({ "tiktok_rotation": "grace", "tiktok_rotation_grace_secs": 60 })).await;
    let g1 = connect(&sb, tt, "van.life.lena").await;
    let g2 = tt.refresh(&g1.access_token, g1.refresh_token.as_ref()).await.unwrap();
    assert_ne!(g2.refresh_token, g1.refresh_token);
    tt.refresh(&g1.access_token, g1.refresh_token.as_ref()).await.expect("within the grace window");
    sb.advance_clock(61).await;
    assert_eq!(permanent_code(tt.refresh(&g1.access_token, g1.refresh_token.as_ref()).await), "invalid_grant");

    sb.settings(json!({ "tiktok_rotation": "none", "tiktok_access_ttl_secs": 7200, "tiktok_refresh_ttl_secs": 180 * 86_400 })).await;
    let g = connect(&sb, tt, "quickrecipes").await;
    assert_eq!(g.expires_in, Duration::from_secs(7200), "the short-lifetime setting");
    let again = tt.refresh(&g.access_token, g.refresh_token.as_ref()).await.unwrap();
    assert_eq!(again.refresh_token, g.refresh_token, "not rotated");
}

#[tokio::test]
async fn revoked_consent_and_expired_tokens_are_permanent() {
    let (sb, clients) = setup().await;
    let tt = &clients.tiktok;
    let account = sb.account_id("dance.daily").await;
    let g = connect(&sb, tt, "dance.daily").await;
    sb.advance_clock(86_401).await;
    assert_eq!(permanent_code(tt.profile(&g.access_token, &g.scopes).await), "access_token_invalid", "expired access token");
    let g = tt.refresh(&g.access_token, g.refresh_token.as_ref()).await.expect("the refresh token outlives it");

    sb.switches("tiktok", &account, json!({ "consent_revoked": true })).await;
    assert_eq!(permanent_code(tt.profile(&g.access_token, &g.scopes).await), "access_token_invalid");
    let err = tt.refresh(&g.access_token, g.refresh_token.as_ref()).await.unwrap_err();
    assert!(matches!(&err, PlatformError::Permanent { code, .. } if code == "invalid_grant"), "{err:?}");
    let text = err.to_string();
    assert!(!text.contains(g.refresh_token.as_ref().unwrap().expose().as_str()) && !text.contains(g.access_token.expose().as_str()));
}

#[tokio::test]
async fn declined_stats_scope_still_reads_the_profile() {
    let (sb, clients) = setup().await;
    let tt = &clients.tiktok;
    let account = sb.account_id("quickrecipes").await;
    sb.switches("tiktok", &account, json!({ "declined_scopes": ["user.info.stats", "video.list"] })).await;
    let verifier = tiktok::pkce_verifier();
    let (code, granted) = consent(&sb, tt, "quickrecipes", Some(&verifier)).await;
    assert!(!granted.contains("user.info.stats"));
    let g = tt.exchange_code(&code, Some(&verifier)).await.unwrap();
    assert!(!g.scopes.contains("user.info.stats"));
    let profile = tt.profile(&g.access_token, &g.scopes).await.unwrap();
    assert_eq!((profile.username.as_str(), profile.followers), ("quickrecipes", None));
    assert!(tt.posts(&g.access_token, &g.scopes, 100).await.unwrap().is_empty(), "no video.list, no videos");
    // Asking for stats anyway is refused by the platform — and permanent.
    assert_eq!(permanent_code(tt.profile(&g.access_token, "user.info.stats").await), "scope_not_authorized");
}

#[tokio::test]
async fn sliding_window_limit_is_rate_limited() {
    let (sb, clients) = setup().await;
    let tt = &clients.tiktok;
    let g = connect(&sb, tt, "dance.daily").await;
    sb.settings(json!({ "tiktok_requests_per_minute": 2 })).await;
    tt.profile(&g.access_token, &g.scopes).await.unwrap();
    tt.profile(&g.access_token, &g.scopes).await.unwrap();
    assert!(matches!(tt.profile(&g.access_token, &g.scopes).await, Err(PlatformError::RateLimited { retry_after: None, .. })));
    tt.posts_page(&g.access_token, &g.scopes, None).await.expect("the window is per endpoint");
    sb.settings(json!({ "tiktok_retry_after": true })).await;
    match tt.profile(&g.access_token, &g.scopes).await {
        Err(PlatformError::RateLimited { retry_after: Some(w), .. }) => assert!(w <= Duration::from_secs(60)),
        other => panic!("expected RateLimited with Retry-After, got {other:?}"),
    }
}

#[tokio::test]
async fn oauth_errors_are_read_whatever_the_status() {
    let (sb, clients) = setup().await;
    let tt = &clients.tiktok;
    sb.settings(json!({ "tiktok_oauth_error_status": 200 })).await;
    assert_eq!(permanent_code(tt.refresh(&Secret::from("x"), Some(&Secret::from("rft.unknown"))).await), "invalid_grant");
    sb.settings(json!({ "tiktok_oauth_error_status": 401 })).await;
    assert_eq!(permanent_code(tt.refresh(&Secret::from("x"), Some(&Secret::from("rft.unknown"))).await), "invalid_grant");
}

#[tokio::test]
async fn server_errors_and_hangs_are_transient_and_revoke_works() {
    let (sb, _) = setup().await;
    let clients = Clients::new(&sb.platforms(Duration::from_millis(800)));
    let tt = &clients.tiktok;
    let g = connect(&sb, tt, "dance.daily").await;
    sb.faults(json!([{ "path_prefix": "tiktok/open/v2/oauth/token/", "error_rate": 1.0 }])).await;
    assert!(matches!(tt.refresh(&g.access_token, g.refresh_token.as_ref()).await, Err(PlatformError::Transient(_))));
    sb.faults(json!([{ "path_prefix": "tiktok/open/v2/user/info/", "hang": true }])).await;
    match tt.profile(&g.access_token, &g.scopes).await {
        Err(PlatformError::Transient(m)) => assert!(m.contains("timed out"), "{m}"),
        other => panic!("expected Transient, got {other:?}"),
    }
    sb.faults(json!([])).await;
    tt.revoke(&g.access_token).await.unwrap();
    assert_eq!(permanent_code(tt.profile(&g.access_token, &g.scopes).await), "access_token_invalid");
    assert_eq!(permanent_code(tt.refresh(&g.access_token, g.refresh_token.as_ref()).await), "invalid_grant");
}

/// Before a paced start, one `HEAD` opens the connection the sync's first call then goes over
/// (the sandbox logs each request's client port), however many syncs ask at once; a connection
/// used recently is not opened again.
#[tokio::test]
async fn warm_opens_the_connection_a_sync_then_uses_once() {
    let (sb, clients) = setup().await;
    let grant = connect(&sb, &clients.tiktok, "dance.daily").await;
    // A process that has not called TikTok yet: a pool of its own.
    let fresh = Clients::new(&sb.platforms(TIMEOUT));
    let last = |log: &serde_json::Value| log.as_array().unwrap().last().map_or(0, |e| e["seq"].as_u64().unwrap());
    let start = last(&sb.admin_get("requests?limit=100000").await);
    tokio::join!(fresh.warm(Platform::Tiktok), fresh.warm(Platform::Tiktok), fresh.warm(Platform::Tiktok));
    fresh.tiktok.profile(&grant.access_token, &grant.scopes).await.unwrap();
    fresh.used(Platform::Tiktok);
    fresh.warm(Platform::Tiktok).await;

    let log = sb.admin_get(&format!("requests?after={start}&limit=100000")).await;
    let log = log.as_array().unwrap();
    let summary: Vec<(&str, &str)> = log.iter().map(|e| (e["method"].as_str().unwrap(), e["endpoint"].as_str().unwrap())).collect();
    assert_eq!(summary, [("HEAD", ""), ("GET", "user/info")], "one warm-up, then the call; none after a recent use");
    assert!(log[0]["peer"].is_string());
    assert_eq!(log[0]["peer"], log[1]["peer"], "the call went over the connection the warm-up opened");
}
