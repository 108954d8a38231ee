//! TikTok Login Kit v2 and the Display API: the token endpoint (code and refresh grants, with
//! rotation), revoke, user info and the video list, with the real error shapes and the
//! per-endpoint sliding-window limit.

use std::{collections::HashMap, time::Duration};

use poem::{
    IntoResponse, Request, Response, handler,
    http::StatusCode,
    web::{Data, Form, Json, Query},
};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::{
    Sandbox, TIKTOK_CLIENT_KEY, TIKTOK_CLIENT_SECRET,
    state::{Net, Rotation, State, TokenKind, TokenProblem, random_token, real_now_ms},
    traffic::seen,
};

type Params = HashMap<String, String>;

fn oauth_error(s: &State, error: &str, description: &str) -> Response {
    let status = StatusCode::from_u16(s.settings.tiktok_oauth_error_status).unwrap_or(StatusCode::BAD_REQUEST);
    Json(json!({ "error": error, "error_description": description, "log_id": random_token(12) })).with_status(status).into_response()
}

fn api_error(status: u16, code: &str, message: &str) -> Response {
    let log_id = random_token(12);
    let mut resp = Json(json!({ "data": {}, "error": { "code": code, "message": message, "log_id": log_id } }))
        .with_status(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST))
        .into_response();
    resp.headers_mut().insert("x-tt-logid", log_id.parse().unwrap());
    resp
}

fn ok(data: Value) -> Response {
    let log_id = random_token(12);
    let mut resp = Json(json!({ "data": data, "error": { "code": "ok", "message": "", "log_id": log_id } })).into_response();
    resp.headers_mut().insert("x-tt-logid", log_id.parse().unwrap());
    resp
}

#[handler]
pub fn token(Form(f): Form<Params>, sandbox: Data<&Sandbox>) -> Response {
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let mut s = sandbox.lock();
    if get("client_key") != TIKTOK_CLIENT_KEY || get("client_secret") != TIKTOK_CLIENT_SECRET {
        return oauth_error(&s, "invalid_client", "Client key or secret is incorrect.");
    }
    match get("grant_type") {
        "authorization_code" => code_grant(&mut s, &f),
        "refresh_token" => refresh_grant(&mut s, get("refresh_token")),
        _ => oauth_error(&s, "unsupported_grant_type", "The grant type is not supported."),
    }
}

fn code_grant(s: &mut State, f: &Params) -> Response {
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let now = s.now_ms();
    let Some(code) = s.codes.get_mut(get("code")).filter(|c| c.net == Net::Tiktok && !c.used) else {
        return oauth_error(s, "invalid_grant", "Authorization code is expired or has been used.");
    };
    if code.redirect_uri != get("redirect_uri") {
        return oauth_error(s, "invalid_request", "redirect_uri does not match the one used in authorization.");
    }
    if let Some(challenge) = code.challenge.clone() {
        let verifier = get("code_verifier");
        // TikTok's challenge is the hex SHA-256 of the verifier, not base64url.
        let expected: String = Sha256::digest(verifier.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        if verifier.is_empty() || expected != challenge {
            return oauth_error(s, "invalid_grant", "Code verifier does not match the code challenge.");
        }
    }
    code.used = true;
    if code.expires_ms <= now {
        return oauth_error(s, "invalid_grant", "Authorization code is expired or has been used.");
    }
    let (account, scopes) = (code.account.clone(), code.scopes.clone());
    let resp = grant(s, &account, scopes, None);
    seen(resp, Net::Tiktok, "oauth/token", Some(&account))
}

fn refresh_grant(s: &mut State, value: &str) -> Response {
    let now = s.now_ms();
    let account = s.tokens.get(value).filter(|t| t.kind == TokenKind::TiktokRefresh).map(|t| t.account.clone());
    let resp = match s.token(value, &[TokenKind::TiktokRefresh]) {
        Err(TokenProblem::Invalidated) => oauth_error(s, "invalid_grant", "The user has revoked access to the app."),
        Err(_) => oauth_error(s, "invalid_grant", "Refresh token is invalid or expired."),
        Ok(old) => {
            let (acct, scopes) = (old.account.clone(), old.scopes.clone());
            let kept = match s.settings.tiktok_rotation {
                Rotation::None => Some(value.to_owned()),
                Rotation::Strict => {
                    s.tokens.get_mut(value).expect("just read").dead_from_ms = Some(now);
                    None
                }
                Rotation::Grace => {
                    let grace = s.settings.tiktok_rotation_grace_secs as i64 * 1000;
                    s.tokens.get_mut(value).expect("just read").dead_from_ms = Some(now + grace);
                    None
                }
            };
            grant(s, &acct, scopes, kept)
        }
    };
    seen(resp, Net::Tiktok, "oauth/refresh", account.as_deref())
}

/// Issues an access token and a refresh token (or re-sends `keep_refresh` unrotated).
fn grant(s: &mut State, account: &str, scopes: Vec<String>, keep_refresh: Option<String>) -> Response {
    let access_ttl = Duration::from_secs(s.settings.tiktok_access_ttl_secs);
    let access = s.issue(TokenKind::TiktokAccess, account, scopes.clone(), access_ttl);
    let (refresh, refresh_expires_in) = match keep_refresh {
        Some(v) => {
            let left = (s.tokens[&v].expires_ms - s.now_ms()) / 1000;
            (v, left)
        }
        None => {
            let ttl = Duration::from_secs(s.settings.tiktok_refresh_ttl_secs);
            (s.issue(TokenKind::TiktokRefresh, account, scopes.clone(), ttl), ttl.as_secs() as i64)
        }
    };
    Json(json!({
        "access_token": access, "expires_in": access_ttl.as_secs(), "open_id": account,
        "refresh_expires_in": refresh_expires_in, "refresh_token": refresh,
        "scope": scopes.join(","), "token_type": "Bearer",
    }))
    .into_response()
}

#[handler]
pub fn revoke(Form(f): Form<Params>, sandbox: Data<&Sandbox>) -> Response {
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let mut s = sandbox.lock();
    if get("client_key") != TIKTOK_CLIENT_KEY || get("client_secret") != TIKTOK_CLIENT_SECRET {
        return oauth_error(&s, "invalid_client", "Client key or secret is incorrect.");
    }
    let now = s.now_ms();
    let Some(account) = s.tokens.get(get("token")).map(|t| t.account.clone()) else {
        return oauth_error(&s, "invalid_request", "Token is invalid.");
    };
    for t in s.tokens.values_mut().filter(|t| t.account == account && matches!(t.kind, TokenKind::TiktokAccess | TokenKind::TiktokRefresh)) {
        t.dead_from_ms = Some(now);
    }
    seen(Json(json!({})).into_response(), Net::Tiktok, "oauth/revoke", Some(&account))
}

/// Bearer token check plus the per-endpoint sliding window; yields the account and its scopes.
fn authorize(s: &mut State, req: &Request, endpoint: &str) -> Result<(String, Vec<String>), Response> {
    let limit = s.settings.tiktok_requests_per_minute.max(1) as usize;
    let now = real_now_ms();
    let window = s.tiktok_windows.entry(endpoint.to_owned()).or_default();
    while window.front().is_some_and(|&t| t <= now - 60_000) {
        window.pop_front();
    }
    if window.len() >= limit {
        let wait_s = window.front().map_or(1, |&t| ((t + 60_000 - now) / 1000).max(1));
        let mut resp = api_error(429, "rate_limit_exceeded", "The API rate limit was exceeded. Please try again later.");
        if s.settings.tiktok_retry_after {
            resp.headers_mut().insert("retry-after", wait_s.to_string().parse().unwrap());
        }
        return Err(resp);
    }
    window.push_back(now);
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    match s.token(bearer, &[TokenKind::TiktokAccess]) {
        Ok(t) => Ok((t.account.clone(), t.scopes.clone())),
        Err(TokenProblem::Expired(_)) => Err(api_error(401, "access_token_invalid", "The access token is invalid or not found in the request.")),
        Err(_) => Err(api_error(401, "access_token_invalid", "The access token is invalid or not found in the request.")),
    }
}

fn fields(q: &Params) -> Vec<String> {
    q.get("fields").map(|f| f.split(',').map(|x| x.trim().to_owned()).collect()).unwrap_or_default()
}

fn only(wanted: &[String], full: Value) -> Value {
    let Value::Object(m) = full else { return full };
    Value::Object(m.into_iter().filter(|(k, _)| wanted.contains(k)).collect::<Map<_, _>>())
}

const STATS: &[&str] = &["follower_count", "following_count", "likes_count", "video_count"];

#[handler]
pub fn user_info(req: &Request, Query(q): Query<Params>, sandbox: Data<&Sandbox>) -> Response {
    let mut s = sandbox.lock();
    let (account, scopes) = match authorize(&mut s, req, "user/info") {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let wanted = fields(&q);
    if wanted.iter().any(|f| STATS.contains(&f.as_str())) && !scopes.iter().any(|x| x == "user.info.stats") {
        return seen(api_error(401, "scope_not_authorized", "The user did not authorize the scope required for completing this request."), Net::Tiktok, "user/info", Some(&account));
    }
    let a = s.account(Net::Tiktok, &account).expect("tokens belong to accounts");
    let user = json!({
        "open_id": a.id, "union_id": a.alt_id, "avatar_url": format!("https://sandbox.invalid/avatars/{}.jpeg", a.username),
        "display_name": a.name, "username": a.username, "follower_count": a.followers,
        "following_count": a.following, "likes_count": a.likes, "video_count": a.post_count,
    });
    seen(ok(json!({ "user": only(&wanted, user) })), Net::Tiktok, "user/info", Some(&account))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct VideoListBody {
    max_count: Option<i64>,
    cursor: Option<i64>,
}

#[handler]
pub fn video_list(req: &Request, Query(q): Query<Params>, body: Option<Json<VideoListBody>>, sandbox: Data<&Sandbox>) -> Response {
    let mut s = sandbox.lock();
    let (account, scopes) = match authorize(&mut s, req, "video/list") {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    if !scopes.iter().any(|x| x == "video.list") {
        return seen(api_error(401, "scope_not_authorized", "The user did not authorize the scope required for completing this request."), Net::Tiktok, "video/list", Some(&account));
    }
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let max = body.max_count.unwrap_or(10);
    if !(1..=20).contains(&max) {
        return seen(api_error(400, "invalid_params", "max_count must be between 1 and 20."), Net::Tiktok, "video/list", Some(&account));
    }
    let a = s.account(Net::Tiktok, &account).expect("tokens belong to accounts");
    let older_than = body.cursor.unwrap_or(i64::MAX);
    let remaining: Vec<_> = a.posts.iter().filter(|p| p.created_ms < older_than).collect();
    // Like the real API, some pages come back short while more remain.
    let short_page = remaining.len() > max as usize && remaining.len() % 3 == 0;
    let take = if short_page { (max as usize).div_ceil(2) } else { max as usize };
    let page: Vec<_> = remaining.iter().take(take).collect();
    let has_more = remaining.len() > page.len();
    let cursor = page.last().map_or(0, |p| p.created_ms);
    let wanted = fields(&q);
    let videos: Vec<Value> = page
        .iter()
        .map(|p| {
            only(&wanted, json!({
                "id": p.id, "create_time": p.created_ms / 1000, "title": p.caption, "video_description": p.caption,
                "duration": p.duration, "cover_image_url": format!("https://sandbox.invalid/covers/{}.jpeg", p.id),
                "share_url": format!("https://www.tiktok.com/@{}/video/{}", a.username, p.id),
                "like_count": p.likes, "comment_count": p.comments, "share_count": p.shares, "view_count": p.views,
            }))
        })
        .collect();
    seen(ok(json!({ "videos": videos, "cursor": cursor, "has_more": has_more })), Net::Tiktok, "video/list", Some(&account))
}
