//! TikTok Login Kit v2 and the Display API (platform-spec.md, "TikTok").

use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{PlatformClient, PlatformError, PostsPage, Profile, TokenGrant, retry_after};
use crate::{config::TiktokConfig, domain::Platform, secret::Secret, store::Post, time::Timestamp};

const BASIC_FIELDS: &str = "open_id,union_id,avatar_url,display_name,username";
const STATS_FIELDS: &str = "follower_count,following_count,likes_count,video_count";
const VIDEO_FIELDS: &str = "id,create_time,title,video_description,duration,cover_image_url,share_url,like_count,comment_count,share_count,view_count";
const PAGE_SIZE: u32 = 20;

#[derive(Clone)]
pub struct Tiktok {
    http: reqwest::Client,
    cfg: TiktokConfig,
}

/// A fresh PKCE verifier (64 unreserved characters) for a connect.
pub fn pkce_verifier() -> Secret {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
    let raw = crate::vault::random_bytes::<64>();
    Secret::new(raw.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect())
}

/// TikTok's PKCE challenge: the **hex** SHA-256 of the verifier (not base64url as in RFC 7636).
pub fn pkce_challenge(verifier: &Secret) -> String {
    Sha256::digest(verifier.expose().as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn has_scope(scopes: &str, wanted: &str) -> bool {
    scopes.split(',').any(|s| s.trim() == wanted)
}

impl Tiktok {
    pub fn new(http: reqwest::Client, cfg: TiktokConfig) -> Self {
        Self { http, cfg }
    }

    /// The client secret, which also signs TikTok's webhooks (see [`crate::events`]).
    pub fn client_secret(&self) -> &Secret {
        &self.cfg.credentials.client_secret
    }

    async fn token_call(&self, form: &[(&str, &str)]) -> Result<TokenGrant, PlatformError> {
        let resp = self
            .http
            .post(format!("{}/v2/oauth/token/", self.cfg.open_url))
            .form(form)
            .send()
            .await
            .map_err(PlatformError::from_reqwest)?;
        let status = resp.status();
        let wait = retry_after(resp.headers());
        let body: Option<Value> = resp.json().await.ok();
        // The OAuth error may come with any status, 200 included (platform-spec.md: a setting).
        if let Some(error) = body.as_ref().and_then(|b| b["error"].as_str()).filter(|e| !e.is_empty()) {
            let message = body.as_ref().and_then(|b| b["error_description"].as_str()).unwrap_or("").to_owned();
            return Err(classify_oauth(status, error, message, wait));
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(PlatformError::RateLimited { retry_after: wait, message: "TikTok token endpoint: 429".into() });
        }
        if !status.is_success() {
            return Err(PlatformError::Transient(format!("TikTok token endpoint: HTTP {status}")));
        }
        let b = body.ok_or_else(|| PlatformError::Transient("unreadable TikTok token response".into()))?;
        let access = b["access_token"].as_str().ok_or_else(|| PlatformError::Transient("TikTok token response without access_token".into()))?;
        Ok(TokenGrant {
            access_token: Secret::new(access.to_owned()),
            expires_in: Duration::from_secs(b["expires_in"].as_u64().unwrap_or(0)),
            refresh_token: b["refresh_token"].as_str().map(|r| Secret::new(r.to_owned())),
            refresh_expires_in: b["refresh_expires_in"].as_u64().map(Duration::from_secs),
            platform_user_id: b["open_id"].as_str().unwrap_or_default().to_owned(),
            scopes: b["scope"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// A Display API call; yields `data` or the classified error.
    async fn api(&self, req: reqwest::RequestBuilder, access: &Secret) -> Result<Value, PlatformError> {
        let resp = req.bearer_auth(access.expose()).send().await.map_err(PlatformError::from_reqwest)?;
        read_api(resp).await
    }
}

async fn read_api(resp: Response) -> Result<Value, PlatformError> {
    let status = resp.status();
    let wait = retry_after(resp.headers());
    let body: Option<Value> = resp.json().await.ok();
    let code = body.as_ref().and_then(|b| b["error"]["code"].as_str()).unwrap_or("");
    let message = body.as_ref().and_then(|b| b["error"]["message"].as_str()).unwrap_or("").to_owned();
    if status.is_success() && (code == "ok" || code.is_empty()) {
        return body.map(|mut b| b["data"].take()).ok_or_else(|| PlatformError::Transient("unreadable TikTok response".into()));
    }
    Err(classify_api(status, code, message, wait))
}

/// TikTok's OAuth errors (`{"error","error_description"}`) → the three classes.
pub fn classify_oauth(status: StatusCode, error: &str, message: String, wait: Option<Duration>) -> PlatformError {
    match error {
        "server_error" | "temporarily_unavailable" => PlatformError::Transient(format!("TikTok {error}: {message}")),
        _ if status == StatusCode::TOO_MANY_REQUESTS => PlatformError::RateLimited { retry_after: wait, message },
        // invalid_grant (revoked, expired or spent refresh token), access_denied, invalid_client,
        // invalid_scope, …: no retry makes them work.
        _ => PlatformError::Permanent { code: error.to_owned(), message },
    }
}

/// TikTok's Display API errors (`{"error":{"code",…}}`) → the three classes.
pub fn classify_api(status: StatusCode, code: &str, message: String, wait: Option<Duration>) -> PlatformError {
    match code {
        "access_token_invalid" | "scope_not_authorized" | "scope_permission_missed" => {
            PlatformError::Permanent { code: code.to_owned(), message }
        }
        "rate_limit_exceeded" => PlatformError::RateLimited { retry_after: wait, message },
        _ if status == StatusCode::TOO_MANY_REQUESTS => PlatformError::RateLimited { retry_after: wait, message },
        _ => PlatformError::Transient(format!("TikTok {status} {code}: {message}")),
    }
}

fn to_post(v: &Value) -> Option<Post> {
    Some(Post {
        platform_post_id: v["id"].as_str().map(str::to_owned).or_else(|| v["id"].as_u64().map(|n| n.to_string()))?,
        caption: v["title"].as_str().or(v["video_description"].as_str()).map(str::to_owned),
        media_type: Some("VIDEO".into()),
        permalink: v["share_url"].as_str().map(str::to_owned),
        thumbnail_url: v["cover_image_url"].as_str().map(str::to_owned),
        published_at: v["create_time"].as_i64().map(Timestamp::from_secs),
        like_count: v["like_count"].as_i64(),
        comment_count: v["comment_count"].as_i64(),
        view_count: v["view_count"].as_i64(),
        share_count: v["share_count"].as_i64(),
    })
}

#[async_trait]
impl PlatformClient for Tiktok {
    fn platform(&self) -> Platform {
        Platform::Tiktok
    }

    fn api_url(&self) -> &str {
        &self.cfg.open_url
    }

    fn authorization_url(&self, state: &str, pkce_challenge: Option<&str>) -> String {
        let mut url = url::Url::parse(&format!("{}/v2/auth/authorize/", self.cfg.www_url)).expect("a valid base URL");
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_key", &self.cfg.credentials.client_id)
                .append_pair("scope", &self.cfg.scopes)
                .append_pair("response_type", "code")
                .append_pair("redirect_uri", &self.cfg.credentials.redirect_uri)
                .append_pair("state", state);
            if let Some(challenge) = pkce_challenge {
                q.append_pair("code_challenge", challenge).append_pair("code_challenge_method", "S256");
            }
        }
        url.into()
    }

    fn uses_pkce(&self) -> bool {
        true
    }

    async fn exchange_code(&self, code: &Secret, pkce_verifier: Option<&Secret>) -> Result<TokenGrant, PlatformError> {
        let c = &self.cfg.credentials;
        let mut form = vec![
            ("client_key", c.client_id.as_str()),
            ("client_secret", c.client_secret.expose().as_str()),
            ("code", code.expose().as_str()),
            ("grant_type", "authorization_code"),
            ("redirect_uri", c.redirect_uri.as_str()),
        ];
        if let Some(v) = pkce_verifier {
            form.push(("code_verifier", v.expose()));
        }
        self.token_call(&form).await
    }

    async fn refresh(&self, _access: &Secret, refresh: Option<&Secret>) -> Result<TokenGrant, PlatformError> {
        let refresh = refresh.ok_or_else(|| PlatformError::Permanent {
            code: "no_refresh_token".into(),
            message: "no refresh token is stored for this account".into(),
        })?;
        let c = &self.cfg.credentials;
        self.token_call(&[
            ("client_key", c.client_id.as_str()),
            ("client_secret", c.client_secret.expose().as_str()),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.expose().as_str()),
        ])
        .await
    }

    async fn profile(&self, access: &Secret, scopes: &str) -> Result<Profile, PlatformError> {
        // Stats need user.info.stats; asking without it fails the whole call.
        let fields = if has_scope(scopes, "user.info.stats") { format!("{BASIC_FIELDS},{STATS_FIELDS}") } else { BASIC_FIELDS.to_owned() };
        let req = self.http.get(format!("{}/v2/user/info/", self.cfg.open_url)).query(&[("fields", fields)]);
        let data = self.api(req, access).await?;
        let u = &data["user"];
        Ok(Profile {
            platform_user_id: u["open_id"].as_str().unwrap_or_default().to_owned(),
            username: u["username"].as_str().or(u["display_name"].as_str()).unwrap_or_default().to_owned(),
            display_name: u["display_name"].as_str().map(str::to_owned),
            followers: u["follower_count"].as_i64(),
            following: u["following_count"].as_i64(),
            media_count: u["video_count"].as_i64(),
            likes: u["likes_count"].as_i64(),
        })
    }

    async fn posts_page(&self, access: &Secret, scopes: &str, cursor: Option<&str>) -> Result<PostsPage, PlatformError> {
        if !has_scope(scopes, "video.list") {
            return Ok(PostsPage { posts: vec![], next: None });
        }
        let mut body = json!({ "max_count": PAGE_SIZE });
        if let Some(c) = cursor.and_then(|c| c.parse::<i64>().ok()) {
            body["cursor"] = json!(c);
        }
        let req = self.http.post(format!("{}/v2/video/list/", self.cfg.open_url)).query(&[("fields", VIDEO_FIELDS)]).json(&body);
        let data = self.api(req, access).await?;
        let posts = data["videos"].as_array().map(|v| v.iter().filter_map(to_post).collect()).unwrap_or_default();
        let next = if data["has_more"].as_bool().unwrap_or(false) { data["cursor"].as_i64().map(|c| c.to_string()) } else { None };
        Ok(PostsPage { posts, next })
    }

    async fn revoke(&self, access: &Secret) -> Result<(), PlatformError> {
        let c = &self.cfg.credentials;
        let form = [("client_key", c.client_id.as_str()), ("client_secret", c.client_secret.expose().as_str()), ("token", access.expose().as_str())];
        let resp = self
            .http
            .post(format!("{}/v2/oauth/revoke/", self.cfg.open_url))
            .form(&form)
            .send()
            .await
            .map_err(PlatformError::from_reqwest)?;
        let status = resp.status();
        let body: Option<Value> = resp.json().await.ok();
        match body.as_ref().and_then(|b| b["error"].as_str()).filter(|e| !e.is_empty()) {
            Some(error) => Err(classify_oauth(status, error, String::new(), None)),
            None if status.is_success() => Ok(()),
            None => Err(PlatformError::Transient(format!("TikTok revoke: HTTP {status}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_challenge_is_hex_sha256() {
        let v = Secret::from("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        let c = pkce_challenge(&v);
        assert_eq!(c.len(), 64);
        assert!(c.chars().all(|ch| ch.is_ascii_hexdigit() && !ch.is_ascii_uppercase()));
        assert_eq!(pkce_challenge(&Secret::from("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let fresh = pkce_verifier();
        assert_eq!(fresh.expose().len(), 64);
        assert!(fresh.expose().chars().all(|ch| ch.is_ascii_alphanumeric() || "-._~".contains(ch)));
    }

    #[test]
    fn oauth_errors_classify() {
        let p = |e| classify_oauth(StatusCode::BAD_REQUEST, e, String::new(), None).class();
        assert_eq!(p("invalid_grant"), "permanent");
        assert_eq!(p("access_denied"), "permanent");
        assert_eq!(p("server_error"), "transient");
        assert_eq!(p("temporarily_unavailable"), "transient");
    }
}
