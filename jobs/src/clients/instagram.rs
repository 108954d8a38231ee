//! Instagram API with Instagram Login (platform-spec.md, "Instagram").

use std::time::Duration;

use async_trait::async_trait;
use chrono::DateTime;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::{PlatformClient, PlatformError, PostsPage, Profile, TokenGrant, retry_after};
use crate::{config::InstagramConfig, domain::Platform, secret::Secret, store::Post, time::Timestamp};

const PROFILE_FIELDS: &str = "user_id,username,name,account_type,profile_picture_url,followers_count,follows_count,media_count";
const MEDIA_FIELDS: &str = "id,caption,media_type,media_product_type,media_url,thumbnail_url,permalink,timestamp,like_count,comments_count";
const PAGE_SIZE: &str = "50";
/// Graph error codes that mean "slow down".
const THROTTLE_CODES: &[i64] = &[4, 17, 32, 613, 80001, 80002, 80003, 80004, 80005, 80006, 80008, 80009];

#[derive(Clone)]
pub struct Instagram {
    http: reqwest::Client,
    cfg: InstagramConfig,
}

impl Instagram {
    pub fn new(http: reqwest::Client, cfg: InstagramConfig) -> Self {
        Self { http, cfg }
    }

    /// The app secret, which also signs Meta's callbacks (see [`crate::events`]).
    pub fn app_secret(&self) -> &Secret {
        &self.cfg.credentials.client_secret
    }

    async fn graph_get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, PlatformError> {
        self.graph_get_as(path, query, classify).await
    }

    /// [`Self::graph_get`] with the endpoint's own reading of its errors.
    async fn graph_get_as(&self, path: &str, query: &[(&str, &str)], classify: Classify) -> Result<Value, PlatformError> {
        let url = format!("{}/{path}", self.cfg.graph_url);
        let resp = self.http.get(url).query(query).send().await.map_err(PlatformError::from_reqwest)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body: Option<Value> = resp.json().await.ok();
        if status.is_success() {
            return body.ok_or_else(|| PlatformError::Transient("unreadable Instagram response".into()));
        }
        Err(classify(status.as_u16(), &headers, body.as_ref()))
    }
}

type Classify = fn(u16, &HeaderMap, Option<&Value>) -> PlatformError;

/// The refresh call's errors. Code 10 there has two meanings (platform-spec.md, "Refresh"):
/// the token is under 24 hours old (wait), or `instagram_business_basic` is not granted — Graph's
/// standard "(#10) Application does not have permission" — which only a new consent fixes.
fn classify_refresh(status: u16, headers: &HeaderMap, body: Option<&Value>) -> PlatformError {
    let err = body.and_then(|b| b.get("error"));
    let message = err.and_then(|e| e["message"].as_str()).unwrap_or("code 10").to_owned();
    match err.and_then(|e| e["code"].as_i64()) {
        Some(10) if message.to_ascii_lowercase().contains("permission") => PlatformError::Permanent { code: "10/permission".into(), message },
        Some(10) => PlatformError::TooEarly(message),
        _ => classify(status, headers, body),
    }
}

/// Instagram's errors → the three classes (platform-spec.md, "Errors" and "Rate limits").
pub fn classify(status: u16, headers: &HeaderMap, body: Option<&Value>) -> PlatformError {
    let err = body.and_then(|b| b.get("error"));
    let code = err.and_then(|e| e["code"].as_i64());
    let subcode = err.and_then(|e| e["error_subcode"].as_i64());
    let message = err.and_then(|e| e["message"].as_str()).unwrap_or("no error message").to_owned();
    let transient = err.and_then(|e| e["is_transient"].as_bool()).unwrap_or(false);
    match code {
        Some(190) => PlatformError::Permanent {
            code: subcode.map_or_else(|| "190".into(), |s| format!("190/{s}")),
            message,
        },
        Some(c) if THROTTLE_CODES.contains(&c) => PlatformError::RateLimited { retry_after: regain_access(headers), message },
        _ if status == 429 => PlatformError::RateLimited { retry_after: retry_after(headers).or(regain_access(headers)), message },
        // Other request errors (code 10 outside the refresh call: a missing permission) are
        // not known to be the grant's end; they must never mark an account for reconnection.
        _ if transient || status >= 500 => PlatformError::Transient(format!("Instagram {status}: {message}")),
        Some(c) => PlatformError::Transient(format!("Instagram {status} code {c}: {message}")),
        None => PlatformError::Transient(format!("Instagram {status} without an error body")),
    }
}

/// The longest `estimated_time_to_regain_access` (minutes) in `X-Business-Use-Case-Usage`.
fn regain_access(headers: &HeaderMap) -> Option<Duration> {
    let raw = headers.get("x-business-use-case-usage")?.to_str().ok()?;
    let v: Value = serde_json::from_str(raw).ok()?;
    let minutes = v
        .as_object()?
        .values()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|e| e["estimated_time_to_regain_access"].as_u64())
        .max()?;
    (minutes > 0).then(|| Duration::from_secs(minutes * 60))
}

/// The short-lived token answer, flat or wrapped in `data` (platform-spec.md: both occur).
fn short_token(v: &Value) -> Option<(String, String, String)> {
    let t = v.get("data").and_then(|d| d.get(0)).unwrap_or(v);
    let token = t["access_token"].as_str()?.to_owned();
    let user = match &t["user_id"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let permissions = match &t["permissions"] {
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","),
        _ => String::new(),
    };
    Some((token, user, permissions))
}

#[derive(Deserialize)]
struct LongToken {
    access_token: String,
    expires_in: u64,
}

fn long_token(v: Value) -> Result<LongToken, PlatformError> {
    serde_json::from_value(v).map_err(|_| PlatformError::Transient("unexpected Instagram token response".into()))
}

fn to_post(m: &Value) -> Option<Post> {
    Some(Post {
        platform_post_id: m["id"].as_str()?.to_owned(),
        caption: m["caption"].as_str().map(str::to_owned),
        media_type: m["media_type"].as_str().map(str::to_owned),
        permalink: m["permalink"].as_str().map(str::to_owned),
        thumbnail_url: m["thumbnail_url"].as_str().or(m["media_url"].as_str()).map(str::to_owned),
        published_at: m["timestamp"].as_str().and_then(|t| DateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%z").ok()).map(|t| Timestamp::from(t.to_utc())),
        like_count: m["like_count"].as_i64(),
        comment_count: m["comments_count"].as_i64(),
        view_count: None,
        share_count: None,
    })
}

#[async_trait]
impl PlatformClient for Instagram {
    fn platform(&self) -> Platform {
        Platform::Instagram
    }

    fn api_url(&self) -> &str {
        &self.cfg.graph_url
    }

    fn authorization_url(&self, state: &str, _pkce_challenge: Option<&str>) -> String {
        let mut url = url::Url::parse(&format!("{}/oauth/authorize", self.cfg.www_url)).expect("a valid base URL");
        url.query_pairs_mut()
            .append_pair("client_id", &self.cfg.credentials.client_id)
            .append_pair("redirect_uri", &self.cfg.credentials.redirect_uri)
            .append_pair("response_type", "code")
            .append_pair("scope", &self.cfg.scopes)
            .append_pair("state", state);
        url.into()
    }

    fn uses_pkce(&self) -> bool {
        false
    }

    async fn exchange_code(&self, code: &Secret, _pkce_verifier: Option<&Secret>) -> Result<TokenGrant, PlatformError> {
        // Instagram appends `#_` to the redirect; a browser drops it, a copy-paste may not.
        let code = code.expose().trim_end_matches("#_");
        let c = &self.cfg.credentials;
        let form = [
            ("client_id", c.client_id.as_str()),
            ("client_secret", c.client_secret.expose().as_str()),
            ("grant_type", "authorization_code"),
            ("redirect_uri", c.redirect_uri.as_str()),
            ("code", code),
        ];
        let resp = self
            .http
            .post(format!("{}/oauth/access_token", self.cfg.api_url))
            .form(&form)
            .send()
            .await
            .map_err(PlatformError::from_reqwest)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body: Option<Value> = resp.json().await.ok();
        if !status.is_success() {
            // The legacy shape: {"error_type","code","error_message"}. A 400 here means the
            // code is bad (used, expired, wrong redirect): the user must start again.
            if let Some(msg) = body.as_ref().and_then(|b| b["error_message"].as_str()) {
                if status.is_client_error() && status != 429 {
                    return Err(PlatformError::Permanent { code: "oauth_code".into(), message: msg.to_owned() });
                }
            }
            return Err(classify(status.as_u16(), &headers, body.as_ref()));
        }
        let (short, user_id, permissions) = body
            .as_ref()
            .and_then(short_token)
            .ok_or_else(|| PlatformError::Transient("unexpected Instagram token response".into()))?;
        let long = long_token(
            self.graph_get(
                "access_token",
                &[("grant_type", "ig_exchange_token"), ("client_secret", c.client_secret.expose()), ("access_token", &short)],
            )
            .await?,
        )?;
        Ok(TokenGrant {
            access_token: Secret::new(long.access_token),
            expires_in: Duration::from_secs(long.expires_in),
            refresh_token: None,
            refresh_expires_in: None,
            platform_user_id: user_id,
            scopes: permissions,
        })
    }

    async fn refresh(&self, access: &Secret, _refresh: Option<&Secret>) -> Result<TokenGrant, PlatformError> {
        let v = self
            .graph_get_as("refresh_access_token", &[("grant_type", "ig_refresh_token"), ("access_token", access.expose())], classify_refresh)
            .await?;
        let long = long_token(v)?;
        Ok(TokenGrant {
            access_token: Secret::new(long.access_token),
            expires_in: Duration::from_secs(long.expires_in),
            refresh_token: None,
            refresh_expires_in: None,
            platform_user_id: String::new(),
            scopes: String::new(),
        })
    }

    async fn profile(&self, access: &Secret, _scopes: &str) -> Result<Profile, PlatformError> {
        let v = self.graph_get("me", &[("fields", PROFILE_FIELDS), ("access_token", access.expose())]).await?;
        let user_id = match &v["user_id"] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err(PlatformError::Transient("Instagram profile without user_id".into())),
        };
        Ok(Profile {
            platform_user_id: user_id,
            username: v["username"].as_str().unwrap_or_default().to_owned(),
            display_name: v["name"].as_str().map(str::to_owned),
            followers: v["followers_count"].as_i64(),
            following: v["follows_count"].as_i64(),
            media_count: v["media_count"].as_i64(),
            likes: None,
        })
    }

    async fn posts_page(&self, access: &Secret, _scopes: &str, cursor: Option<&str>) -> Result<PostsPage, PlatformError> {
        let mut query = vec![("fields", MEDIA_FIELDS), ("limit", PAGE_SIZE), ("access_token", access.expose().as_str())];
        if let Some(after) = cursor {
            query.push(("after", after));
        }
        let v = self.graph_get("me/media", &query).await?;
        let posts = v["data"].as_array().map(|d| d.iter().filter_map(to_post).collect()).unwrap_or_default();
        // Follow the `after` cursor against our own base URL rather than the absolute `next`,
        // so the token is only ever sent to the configured host. `next` says whether to go on.
        let next = v["paging"]["next"].as_str().and(v["paging"]["cursors"]["after"].as_str()).map(str::to_owned);
        Ok(PostsPage { posts, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_token_shapes_parse() {
        let flat = json!({ "access_token": "t", "user_id": 17841405793187218u64, "permissions": "instagram_business_basic" });
        let wrapped = json!({ "data": [{ "access_token": "t", "user_id": "17841405793187218", "permissions": ["instagram_business_basic"] }] });
        for v in [flat, wrapped] {
            assert_eq!(short_token(&v).unwrap(), ("t".into(), "17841405793187218".into(), "instagram_business_basic".into()));
        }
    }

    #[test]
    fn buc_header_gives_the_longest_wait() {
        let mut h = HeaderMap::new();
        h.insert("x-business-use-case-usage", r#"{"1":[{"type":"instagram","estimated_time_to_regain_access":3},{"estimated_time_to_regain_access":7}]}"#.parse().unwrap());
        assert_eq!(regain_access(&h), Some(Duration::from_secs(420)));
        assert_eq!(regain_access(&HeaderMap::new()), None);
    }

    #[test]
    fn code_10_on_refresh_is_too_early_or_a_missing_permission_and_never_transient() {
        let body = |m: &str| json!({ "error": { "message": m, "type": "OAuthException", "code": 10 } });
        let young = body("(#10) The access token must be at least 24 hours old to be refreshed.");
        assert!(matches!(classify_refresh(400, &HeaderMap::new(), Some(&young)), PlatformError::TooEarly(_)));
        let scope = body("(#10) Application does not have permission for this action");
        let e = classify_refresh(400, &HeaderMap::new(), Some(&scope));
        assert!(matches!(&e, PlatformError::Permanent { code, .. } if code == "10/permission"), "{e:?}");
        // Other codes read as on every call.
        let gone = json!({ "error": { "message": "Session has expired", "code": 190, "error_subcode": 463 } });
        assert!(matches!(classify_refresh(400, &HeaderMap::new(), Some(&gone)), PlatformError::Permanent { .. }));
    }

    #[test]
    fn timestamps_parse() {
        let p = to_post(&json!({ "id": "1", "timestamp": "2017-08-31T18:10:00+0000" })).unwrap();
        assert_eq!(p.published_at, Some(Timestamp(1_504_203_000_000)));
    }
}
