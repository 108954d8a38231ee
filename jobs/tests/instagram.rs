//! The Instagram client against the sandbox over real HTTP: every success path, every failure
//! class, and the sandbox's own rules.

use std::time::{Duration, Instant};

use jobs::{
    Secret,
    clients::{Clients, PlatformClient, PlatformError},
};
use serde_json::json;
use testkit::platform::{SandboxServer, param};

const TIMEOUT: Duration = Duration::from_secs(5);

async fn setup() -> (SandboxServer, Clients) {
    let sb = SandboxServer::start().await;
    let clients = Clients::new(&sb.platforms(TIMEOUT));
    (sb, clients)
}

/// Consent as `username`; returns the code exactly as the redirect carries it.
async fn code_for(sb: &SandboxServer, ig: &dyn PlatformClient, username: &str) -> Secret {
    let account = sb.account_id(username).await;
    let url = ig.authorization_url("st-1", None);
    let redirect = sb.consent(&url, &account, true).await;
    assert_eq!(param(&redirect, "state").as_deref(), Some("st-1"));
    assert_eq!(redirect.fragment(), Some("_"), "Instagram appends #_");
    Secret::new(param(&redirect, "code").expect("a code"))
}

fn assert_permanent(r: Result<impl std::fmt::Debug, PlatformError>, code: &str) {
    match r {
        Err(PlatformError::Permanent { code: c, .. }) => assert_eq!(c, code),
        other => panic!("expected Permanent {code}, got {other:?}"),
    }
}

fn assert_transient(r: Result<impl std::fmt::Debug, PlatformError>) -> String {
    match r {
        Err(PlatformError::Transient(m)) => m,
        other => panic!("expected Transient, got {other:?}"),
    }
}

#[tokio::test]
async fn connect_profile_and_all_posts() {
    let (sb, clients) = setup().await;
    let ig = &clients.instagram;
    let account = sb.account_id("acme_studio").await;
    let code = code_for(&sb, ig, "acme_studio").await;
    let grant = ig.exchange_code(&code, None).await.unwrap();
    assert_eq!(grant.platform_user_id, account);
    assert!(grant.access_token.expose().starts_with("IGQVJlong"), "the long-lived token");
    assert!(grant.expires_in > Duration::from_secs(59 * 86_400));
    assert_eq!(grant.scopes, "instagram_business_basic");

    let profile = ig.profile(&grant.access_token, &grant.scopes).await.unwrap();
    assert_eq!((profile.username.as_str(), profile.followers, profile.media_count), ("acme_studio", Some(15_200), Some(250)));

    let posts = ig.posts(&grant.access_token, &grant.scopes, 10_000).await.unwrap();
    assert_eq!(posts.len(), 250, "every page followed");
    let mut ids: Vec<_> = posts.iter().map(|p| p.platform_post_id.clone()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 250, "no page read twice");
    assert!(posts.windows(2).all(|w| w[0].published_at >= w[1].published_at), "newest first");
    assert!(posts.iter().all(|p| p.published_at.is_some() && p.like_count.is_some()));
    assert!(sb.counter("instagram", "me/media", &account).await >= 5, "250 posts at 50 a page");

    let capped = ig.posts(&grant.access_token, &grant.scopes, 60).await.unwrap();
    assert_eq!(capped.len(), 60);
}

#[tokio::test]
async fn wrapped_token_response_is_accepted() {
    let (sb, clients) = setup().await;
    sb.settings(json!({ "instagram_wrapped_token_response": true })).await;
    let code = code_for(&sb, &clients.instagram, "sunny.bakes").await;
    let grant = clients.instagram.exchange_code(&code, None).await.unwrap();
    assert_eq!(grant.platform_user_id, sb.account_id("sunny.bakes").await);
}

#[tokio::test]
async fn codes_are_single_use_expire_and_need_the_same_redirect_uri() {
    let (sb, clients) = setup().await;
    let ig = &clients.instagram;
    let code = code_for(&sb, ig, "acme_studio").await;
    ig.exchange_code(&code, None).await.unwrap();
    assert_permanent(ig.exchange_code(&code, None).await, "oauth_code");

    let other = Clients::new(&sb.platforms_with_redirect(TIMEOUT, "http://127.0.0.1:9/elsewhere"));
    let code = code_for(&sb, ig, "acme_studio").await;
    assert_permanent(other.instagram.exchange_code(&code, None).await, "oauth_code");

    let code = code_for(&sb, ig, "acme_studio").await;
    sb.advance_clock(3601).await;
    assert_permanent(ig.exchange_code(&code, None).await, "oauth_code");
}

#[tokio::test]
async fn denied_consent_redirects_with_access_denied() {
    let (sb, clients) = setup().await;
    let account = sb.account_id("acme_studio").await;
    let redirect = sb.consent(&clients.instagram.authorization_url("st-9", None), &account, false).await;
    assert_eq!(param(&redirect, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&redirect, "error_reason").as_deref(), Some("user_denied"));
    assert_eq!(param(&redirect, "state").as_deref(), Some("st-9"));
    assert_eq!(param(&redirect, "code"), None);
}

#[tokio::test]
async fn refresh_waits_24_hours_then_renews_60_days() {
    let (sb, clients) = setup().await;
    let ig = &clients.instagram;
    let grant = ig.exchange_code(&code_for(&sb, ig, "acme_studio").await, None).await.unwrap();
    // Code 10: too early, which is neither a broken grant nor a passing failure.
    match ig.refresh(&grant.access_token, None).await {
        Err(e @ PlatformError::TooEarly(_)) => assert_eq!(e.class(), "too_early"),
        other => panic!("expected TooEarly, got {other:?}"),
    }

    sb.advance_clock(25 * 3600).await;
    let fresh = ig.refresh(&grant.access_token, None).await.unwrap();
    assert_ne!(fresh.access_token, grant.access_token);
    assert!(fresh.expires_in > Duration::from_secs(59 * 86_400));
    ig.profile(&fresh.access_token, "").await.unwrap();
    ig.profile(&grant.access_token, "").await.expect("by default the old token stays valid");

    sb.settings(json!({ "instagram_refresh_keeps_old_token": false })).await;
    sb.advance_clock(25 * 3600).await;
    let newer = ig.refresh(&fresh.access_token, None).await.unwrap();
    assert_permanent(ig.profile(&fresh.access_token, "").await, "190");
    ig.profile(&newer.access_token, "").await.unwrap();
}

#[tokio::test]
async fn expired_and_invalidated_tokens_are_permanent() {
    let (sb, clients) = setup().await;
    let ig = &clients.instagram;
    let grant = ig.exchange_code(&code_for(&sb, ig, "acme_studio").await, None).await.unwrap();
    sb.advance_clock(61 * 86_400).await;
    assert_permanent(ig.profile(&grant.access_token, "").await, "190/463");
    assert_permanent(ig.refresh(&grant.access_token, None).await, "190/463");

    let account = sb.account_id("sunny.bakes").await;
    let grant = ig.exchange_code(&code_for(&sb, ig, "sunny.bakes").await, None).await.unwrap();
    sb.switches("instagram", &account, json!({ "password_changed": true })).await;
    let err = ig.profile(&grant.access_token, "").await.unwrap_err();
    assert!(matches!(&err, PlatformError::Permanent { code, .. } if code == "190/460"), "{err:?}");
    assert!(!err.to_string().contains(grant.access_token.expose().as_str()), "no token in the error text");
}

#[tokio::test]
async fn throttling_is_rate_limited_with_the_platforms_hint() {
    let (sb, clients) = setup().await;
    let ig = &clients.instagram;
    let grant = ig.exchange_code(&code_for(&sb, ig, "acme_studio").await, None).await.unwrap();
    sb.settings(json!({ "instagram_calls_per_hour": 3, "instagram_throttle_status": 403 })).await;
    for _ in 0..3 {
        ig.profile(&grant.access_token, "").await.unwrap();
    }
    match ig.profile(&grant.access_token, "").await {
        Err(PlatformError::RateLimited { retry_after: Some(wait), .. }) => {
            assert!(wait >= Duration::from_secs(60) && wait <= Duration::from_secs(3660), "{wait:?}")
        }
        other => panic!("expected RateLimited with a hint, got {other:?}"),
    }
    sb.advance_clock(3601).await;
    ig.profile(&grant.access_token, "").await.expect("the window rolls on");
}

#[tokio::test]
async fn server_errors_and_hangs_are_transient() {
    let (sb, _) = setup().await;
    let timeout = Duration::from_millis(800);
    let clients = Clients::new(&sb.platforms(timeout));
    let ig = &clients.instagram;
    let grant = ig.exchange_code(&code_for(&sb, ig, "acme_studio").await, None).await.unwrap();

    sb.faults(json!([{ "path_prefix": "instagram/graph/me", "error_rate": 1.0 }])).await;
    assert_transient(ig.profile(&grant.access_token, "").await);
    sb.faults(json!([{ "path_prefix": "instagram/graph/me", "error_rate": 0.5 }])).await;
    let mut failures = 0;
    for _ in 0..10 {
        failures += ig.profile(&grant.access_token, "").await.is_err() as u32;
    }
    assert_eq!(failures, 5, "half the calls fail");

    sb.faults(json!([{ "path_prefix": "instagram/graph/me", "hang": true }])).await;
    let start = Instant::now();
    let msg = assert_transient(ig.profile(&grant.access_token, "").await);
    assert!(msg.contains("timed out"), "{msg}");
    assert!(start.elapsed() < timeout + Duration::from_secs(5), "gave up after the timeout, not the hang");
    assert!(!msg.contains(grant.access_token.expose().as_str()) && !msg.contains("access_token="), "{msg}");

    sb.faults(json!([])).await;
    ig.profile(&grant.access_token, "").await.expect("recovers when the fault is cleared");
}
