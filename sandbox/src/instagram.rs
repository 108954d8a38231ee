//! Instagram API with Instagram Login: code exchange, long-lived tokens, refresh, profile and
//! media, with the real error shapes, usage headers and throttling.

use std::{collections::HashMap, time::Duration};

use poem::{
    IntoResponse, Request, Response, handler,
    http::StatusCode,
    web::{Data, Form, Json, Query},
};
use serde_json::{Map, Value, json};

use crate::{
    INSTAGRAM_CLIENT_ID, INSTAGRAM_CLIENT_SECRET, Sandbox,
    state::{Net, State, TokenKind, TokenProblem, random_token},
    traffic::seen,
};

type Params = HashMap<String, String>;

const SHORT_TTL: Duration = Duration::from_secs(3600);
const LONG_TTL: Duration = Duration::from_secs(60 * 86_400);
const MIN_REFRESH_AGE_MS: i64 = 86_400_000;
const WINDOW_MS: i64 = 3_600_000;

/// `{"error":{…}}`, the Graph API's error shape.
fn graph_error(status: u16, code: i64, subcode: Option<i64>, message: &str, transient: bool) -> Response {
    let mut e = json!({ "message": message, "type": "OAuthException", "code": code, "fbtrace_id": random_token(9) });
    if let Some(s) = subcode {
        e["error_subcode"] = json!(s);
    }
    if transient {
        e["is_transient"] = json!(true);
    }
    Json(json!({ "error": e })).with_status(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST)).into_response()
}

/// The legacy shape `api.instagram.com/oauth/access_token` answers errors with.
fn legacy_error(message: &str) -> Response {
    Json(json!({ "error_type": "OAuthException", "code": 400, "error_message": message }))
        .with_status(StatusCode::BAD_REQUEST)
        .into_response()
}

fn token_error(p: TokenProblem) -> Response {
    match p {
        TokenProblem::Unknown | TokenProblem::Dead => graph_error(400, 190, None, "Invalid OAuth access token - Cannot parse access token", false),
        TokenProblem::Expired(at) => graph_error(
            400,
            190,
            Some(463),
            &format!("Error validating access token: Session has expired on {}. The current time is later.", rfc_ig(at)),
            false,
        ),
        TokenProblem::Invalidated => graph_error(
            400,
            190,
            Some(460),
            "Error validating access token: The session has been invalidated because the user changed their password or the user removed the app.",
            false,
        ),
    }
}

#[handler]
pub fn exchange_code(Form(f): Form<Params>, sandbox: Data<&Sandbox>) -> Response {
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let mut s = sandbox.lock();
    if get("client_id") != INSTAGRAM_CLIENT_ID || get("client_secret") != INSTAGRAM_CLIENT_SECRET {
        return legacy_error("Invalid platform app");
    }
    if get("grant_type") != "authorization_code" {
        return legacy_error("Invalid grant_type");
    }
    let now = s.now_ms();
    let Some(code) = s.codes.get_mut(get("code")).filter(|c| c.net == Net::Instagram && !c.used) else {
        return legacy_error("Matching code was not found or was already used");
    };
    if code.redirect_uri != get("redirect_uri") {
        return legacy_error("Error validating verification code. Please make sure your redirect_uri is identical to the one you used in the OAuth dialog request");
    }
    code.used = true;
    if code.expires_ms <= now {
        return legacy_error("This authorization code has expired");
    }
    let (account, scopes) = (code.account.clone(), code.scopes.clone());
    let token = s.issue(TokenKind::InstagramShort, &account, scopes.clone(), SHORT_TTL);
    let user_id: Value = account.parse::<u64>().map_or_else(|_| json!(account), |n| json!(n));
    let body = json!({ "access_token": token, "user_id": user_id, "permissions": scopes.join(",") });
    let body = if s.settings.instagram_wrapped_token_response { json!({ "data": [body] }) } else { body };
    seen(Json(body).into_response(), Net::Instagram, "oauth/access_token", Some(&account))
}

#[handler]
pub fn exchange_long_lived(Query(q): Query<Params>, sandbox: Data<&Sandbox>) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    let mut s = sandbox.lock();
    if get("grant_type") != "ig_exchange_token" {
        return graph_error(400, 100, None, "Unsupported grant_type", false);
    }
    if get("client_secret") != INSTAGRAM_CLIENT_SECRET {
        return graph_error(400, 101, None, "Error validating client secret.", false);
    }
    let short = match s.token(get("access_token"), &[TokenKind::InstagramShort]) {
        Ok(t) => t.clone(),
        Err(p) => return token_error(p),
    };
    let token = s.issue(TokenKind::InstagramLong, &short.account, short.scopes.clone(), LONG_TTL);
    let body = json!({ "access_token": token, "token_type": "bearer", "expires_in": LONG_TTL.as_secs() - 56 });
    seen(Json(body).into_response(), Net::Instagram, "access_token", Some(&short.account))
}

#[handler]
pub fn refresh(Query(q): Query<Params>, sandbox: Data<&Sandbox>) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    let mut s = sandbox.lock();
    if get("grant_type") != "ig_refresh_token" {
        return graph_error(400, 100, None, "Unsupported grant_type", false);
    }
    let old_value = get("access_token").to_owned();
    let old = match s.token(&old_value, &[TokenKind::InstagramLong]) {
        Ok(t) => t.clone(),
        Err(p) => return seen_problem(token_error(p), &s, &old_value),
    };
    let now = s.now_ms();
    let resp = if now - old.issued_ms < MIN_REFRESH_AGE_MS {
        graph_error(400, 10, None, "(#10) The access token must be at least 24 hours old to be refreshed.", false)
    } else if !old.scopes.iter().any(|x| x == "instagram_business_basic") {
        graph_error(400, 10, None, "(#10) Application does not have permission for this action: instagram_business_basic is required.", false)
    } else {
        let token = s.issue(TokenKind::InstagramLong, &old.account, old.scopes.clone(), LONG_TTL);
        if !s.settings.instagram_refresh_keeps_old_token {
            if let Some(t) = s.tokens.get_mut(&old_value) {
                t.dead_from_ms = Some(now);
            }
        }
        Json(json!({ "access_token": token, "token_type": "bearer", "expires_in": LONG_TTL.as_secs() - 56 })).into_response()
    };
    seen(resp, Net::Instagram, "refresh_access_token", Some(&old.account))
}

/// Counts a refresh attempt with a bad token against its account, when the token is known.
fn seen_problem(resp: Response, s: &State, token: &str) -> Response {
    let account = s.tokens.get(token).map(|t| t.account.clone());
    seen(resp, Net::Instagram, "refresh_access_token", account.as_deref())
}

/// Checks the token and the account's usage; on success yields the account id and the usage
/// headers to send.
fn authorize(s: &mut State, q: &Params) -> Result<(String, [(String, String); 2]), Response> {
    let token = q.get("access_token").map(String::as_str).unwrap_or("");
    let account = s.token(token, &[TokenKind::InstagramShort, TokenKind::InstagramLong]).map_err(token_error)?.account.clone();
    let now = s.now_ms();
    let budget = s.settings.instagram_calls_per_hour.max(1) as usize;
    let throttle_status = s.settings.instagram_throttle_status;
    let calls = s.instagram_usage.entry(account.clone()).or_default();
    while calls.front().is_some_and(|&t| t <= now - WINDOW_MS) {
        calls.pop_front();
    }
    let pct = (calls.len() * 100 / budget).min(100);
    let regain_min = calls.front().map_or(0, |&oldest| (oldest + WINDOW_MS - now).max(0) / 60_000 + 1);
    let app_usage = json!({ "call_count": pct, "total_time": pct / 2, "total_cputime": pct / 2 }).to_string();
    let buc = json!({ account.clone(): [{ "type": "instagram", "call_count": pct, "total_cputime": pct / 2, "total_time": pct / 2,
        "estimated_time_to_regain_access": if pct >= 100 { regain_min } else { 0 } }] })
    .to_string();
    let headers = [("X-App-Usage".to_owned(), app_usage), ("X-Business-Use-Case-Usage".to_owned(), buc)];
    if pct >= 100 {
        let mut resp = graph_error(throttle_status, 80002, None, "There have been too many calls to this Instagram account. Wait a bit and try again. For more info, please refer to https://developers.facebook.com/docs/graph-api/overview/rate-limiting.", true);
        for (k, v) in headers {
            resp.headers_mut().insert(poem::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        return Err(seen(resp, Net::Instagram, "throttled", Some(&account)));
    }
    calls.push_back(now);
    Ok((account, headers))
}

fn with_headers(mut resp: Response, headers: [(String, String); 2]) -> Response {
    for (k, v) in headers {
        resp.headers_mut().insert(poem::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    resp
}

/// Keeps only the requested fields (`id` always), as the Graph API does.
fn only(fields: Option<&String>, full: Map<String, Value>) -> Value {
    let wanted: Vec<&str> = fields.map(|f| f.split(',').map(str::trim).collect()).unwrap_or_default();
    Value::Object(full.into_iter().filter(|(k, _)| k == "id" || wanted.contains(&k.as_str())).collect())
}

#[handler]
pub fn me(Query(q): Query<Params>, sandbox: Data<&Sandbox>) -> Response {
    let mut s = sandbox.lock();
    let (account, headers) = match authorize(&mut s, &q) {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let a = s.account(Net::Instagram, &account).expect("tokens belong to accounts");
    let full = json!({
        "id": a.alt_id, "user_id": a.id, "username": a.username, "name": a.name,
        "account_type": "BUSINESS", "profile_picture_url": format!("https://sandbox.invalid/avatars/{}.jpg", a.username),
        "followers_count": a.followers, "follows_count": a.following, "media_count": a.post_count,
    });
    let Value::Object(full) = full else { unreachable!() };
    seen(with_headers(Json(only(q.get("fields"), full)).into_response(), headers), Net::Instagram, "me", Some(&account))
}

#[handler]
pub fn media(req: &Request, Query(q): Query<Params>, sandbox: Data<&Sandbox>) -> Response {
    let mut s = sandbox.lock();
    let (account, headers) = match authorize(&mut s, &q) {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let limit = q.get("limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(25).clamp(1, 100);
    let start = q.get("after").and_then(|c| decode_cursor(c)).unwrap_or(0);
    let a = s.account(Net::Instagram, &account).expect("tokens belong to accounts");
    let page: Vec<Value> = a.posts.iter().skip(start).take(limit).map(|p| {
        let mut m = json!({
            "id": p.id, "caption": p.caption, "media_type": p.media_type,
            "media_product_type": if p.media_type == "VIDEO" { "REELS" } else { "FEED" },
            "media_url": format!("https://sandbox.invalid/media/{}.jpg", p.id),
            "permalink": format!("https://www.instagram.com/p/{}/", p.id),
            "timestamp": rfc_ig(p.created_ms), "like_count": p.likes, "comments_count": p.comments,
        });
        if p.media_type == "VIDEO" {
            m["thumbnail_url"] = json!(format!("https://sandbox.invalid/thumbs/{}.jpg", p.id));
        }
        let Value::Object(m) = m else { unreachable!() };
        only(q.get("fields"), m)
    }).collect();
    let end = start + page.len();
    let mut paging = json!({ "cursors": { "before": encode_cursor(start), "after": encode_cursor(end) } });
    if end < a.posts.len() {
        let host = req.headers().get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
        let mut next = url::Url::parse(&format!("http://{host}{}", req.original_uri().path())).expect("a valid URL");
        {
            let mut pairs = next.query_pairs_mut();
            for (k, v) in q.iter().filter(|(k, _)| k.as_str() != "after") {
                pairs.append_pair(k, v);
            }
            pairs.append_pair("after", &encode_cursor(end));
        }
        paging["next"] = json!(next.to_string());
    }
    let body = json!({ "data": page, "paging": paging });
    seen(with_headers(Json(body).into_response(), headers), Net::Instagram, "me/media", Some(&account))
}

fn encode_cursor(i: usize) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("idx:{i}"))
}

fn decode_cursor(c: &str) -> Option<usize> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c).ok()?;
    String::from_utf8(raw).ok()?.strip_prefix("idx:")?.parse().ok()
}

/// `2017-08-31T18:10:00+0000`, Instagram's timestamp format.
pub fn rfc_ig(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().format("%Y-%m-%dT%H:%M:%S%z").to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn instagram_timestamps() {
        assert_eq!(super::rfc_ig(1_504_203_000_000), "2017-08-31T18:10:00+0000");
        assert_eq!(super::rfc_ig(0), "1970-01-01T00:00:00+0000");
    }
}
