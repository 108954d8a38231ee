//! Who may use the dashboard.
//!
//! A login with `OPS_PASSWORD` sets a session cookie: `{expires}.{nonce}.{mac}`, an HMAC over
//! the first two parts with the dashboard's session key. Nothing is stored server-side, so any
//! API process verifies any session. Each form carries a CSRF token derived from the session's
//! nonce; the cookie is also `SameSite=Strict` and `HttpOnly`.
//!
//! Failed logins count against the API's `auth` limit ([`crate::LoginThrottle`]).

use std::{sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use hmac::{Hmac, Mac};
use jobs::{Secret, Timestamp};
use maud::html;
use poem::{
    Endpoint, IntoResponse, Request, Response, handler,
    http::{StatusCode, header},
    web::{Data, Form},
};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::{BASE, Dashboard, page};

/// How the dashboard is reached.
#[derive(Clone, Debug)]
pub enum Access {
    /// Log in with this password.
    Password(Secret),
    /// No login (development: `socialsync up` without `OPS_PASSWORD`).
    Open,
    /// Off: no `OPS_PASSWORD` in production. Every page says how to turn it on.
    Off,
}

const COOKIE: &str = "socialsync_ops";
/// How long a login lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// A verified session, attached to the request for the pages.
#[derive(Clone, Debug)]
pub struct Session {
    /// The CSRF token every form of this session carries.
    pub csrf: String,
}

fn mac(key: &[u8; 32], parts: &[&str]) -> Vec<u8> {
    let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(p.as_bytes());
        m.update(b"\n");
    }
    m.finalize().into_bytes().to_vec()
}

impl Session {
    fn new(key: &[u8; 32], nonce: &str) -> Session {
        let csrf = B64.encode(mac(key, &["csrf", nonce]));
        Session { csrf }
    }

    /// A fresh session and its cookie value.
    fn issue(key: &[u8; 32], now: Timestamp) -> (Session, String) {
        let nonce = B64.encode(jobs::vault::random_bytes::<18>());
        let expires = now.plus(SESSION_TTL).millis().to_string();
        let sig = B64.encode(mac(key, &["session", &expires, &nonce]));
        (Session::new(key, &nonce), format!("{expires}.{nonce}.{sig}"))
    }

    fn verify(key: &[u8; 32], value: &str, now: Timestamp) -> Option<Session> {
        let mut parts = value.splitn(3, '.');
        let (expires, nonce, sig) = (parts.next()?, parts.next()?, parts.next()?);
        let sig = B64.decode(sig).ok()?;
        let expected = mac(key, &["session", expires, nonce]);
        if !bool::from(expected.ct_eq(&sig)) || expires.parse::<i64>().ok()? <= now.millis() {
            return None;
        }
        Some(Session::new(key, nonce))
    }

    /// Whether a submitted form's token belongs to this session.
    pub fn csrf_ok(&self, token: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(token.as_bytes()))
    }
}

fn cookie_value(req: &Request) -> Option<String> {
    req.headers().get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (name, value) = c.trim().split_once('=')?;
        (name == COOKIE).then(|| value.to_owned())
    })
}

fn set_cookie(d: &Dashboard, req: &Request, value: &str, max_age: Duration) -> String {
    let secure = if d.config.secure_cookies || req.extensions().get::<crate::OverHttps>().is_some() { "; Secure" } else { "" };
    format!("{COOKIE}={value}; Path={BASE}; Max-Age={}; HttpOnly; SameSite=Strict{secure}", max_age.as_secs())
}

/// In front of every page: a valid session, or the login page. In [`Access::Open`] a session
/// is handed out on the first visit.
pub async fn require<E: Endpoint>(next: Arc<E>, mut req: Request) -> poem::Result<Response> {
    let d = req.data::<Dashboard>().expect("the dashboard attaches its state").clone();
    let now = Timestamp::now();
    let key = &d.config.session_key;
    let session = cookie_value(&req).and_then(|v| Session::verify(key, &v, now));
    match (&d.config.access, session) {
        (Access::Off, _) => Ok(page::off().into_response()),
        (_, Some(s)) => {
            req.extensions_mut().insert(s);
            next.call(req).await.map(IntoResponse::into_response)
        }
        (Access::Open, None) => {
            let (s, value) = Session::issue(key, now);
            let cookie = set_cookie(&d, &req, &value, SESSION_TTL);
            req.extensions_mut().insert(s);
            let mut resp = next.call(req).await?.into_response();
            if let Ok(v) = cookie.parse() {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
            Ok(resp)
        }
        (Access::Password(_), None) => {
            let wants_page = req.method() == poem::http::Method::GET && req.original_uri().path() != format!("{BASE}/live");
            if wants_page {
                Ok(redirect(&format!("{BASE}/login")))
            } else {
                Ok(Response::builder().status(StatusCode::UNAUTHORIZED).body("sign in first"))
            }
        }
    }
}

pub fn redirect(to: &str) -> Response {
    Response::builder().status(StatusCode::SEE_OTHER).header(header::LOCATION, to).finish()
}

#[handler]
pub fn login_page(d: Data<&Dashboard>) -> Response {
    match d.config.access {
        Access::Password(_) => login_form(None, StatusCode::OK),
        Access::Open => redirect(&format!("{BASE}/")),
        Access::Off => page::off().into_response(),
    }
}

fn login_form(error: Option<&str>, status: StatusCode) -> Response {
    let body = html! {
        form.login method="post" action={(BASE) "/login"} {
            h1 { "socialsync ops" }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            label { "Password " input type="password" name="password" autofocus required autocomplete="current-password"; }
            button type="submit" { "Sign in" }
        }
    };
    let mut resp = page::bare("Sign in", body).into_response();
    resp.set_status(status);
    resp
}

#[derive(Deserialize)]
pub struct LoginForm {
    password: String,
}

#[handler]
pub async fn login(req: &Request, d: Data<&Dashboard>, form: Form<LoginForm>) -> Response {
    let Access::Password(expected) = &d.config.access else { return redirect(&format!("{BASE}/")) };
    let locked_out = |after: Duration| {
        let minutes = after.as_secs().div_ceil(60);
        let mut resp = login_form(Some(&format!("Too many failed sign-ins from this address. Try again in {minutes} min.")), StatusCode::TOO_MANY_REQUESTS);
        if let Ok(v) = after.as_secs().to_string().parse() {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    };
    if let Some(t) = &d.throttle {
        if let Some(after) = t.locked(req).await {
            return locked_out(after);
        }
    }
    if !bool::from(form.password.as_bytes().ct_eq(expected.expose().as_bytes())) {
        tracing::warn!(target: "dashboard", "failed dashboard sign-in");
        if let Some(t) = &d.throttle {
            if let Some(after) = t.failed(req).await {
                return locked_out(after);
            }
        }
        return login_form(Some("Wrong password."), StatusCode::UNAUTHORIZED);
    }
    let (_, value) = Session::issue(&d.config.session_key, Timestamp::now());
    tracing::info!(target: "dashboard", "dashboard sign-in");
    let mut resp = redirect(&format!("{BASE}/"));
    if let Ok(v) = set_cookie(&d, req, &value, SESSION_TTL).parse() {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

#[handler]
pub fn logout(req: &Request, d: Data<&Dashboard>) -> Response {
    let mut resp = redirect(&format!("{BASE}/login"));
    if let Ok(v) = set_cookie(&d, req, "", Duration::ZERO).parse() {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// Derives the session key from the password and a server secret (the encryption key).
pub fn derive_key(password: Option<&Secret>, server_secret: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(server_secret).expect("HMAC takes any key length");
    m.update(b"socialsync dashboard session\n");
    if let Some(p) = password {
        m.update(p.expose().as_bytes());
    }
    m.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_verifies_until_it_expires_and_only_with_its_key() {
        let key = [7u8; 32];
        let now = Timestamp(1_000_000);
        let (s, value) = Session::issue(&key, now);
        let back = Session::verify(&key, &value, now.plus(Duration::from_secs(60))).expect("valid");
        assert_eq!(back.csrf, s.csrf);
        assert!(back.csrf_ok(&s.csrf) && !back.csrf_ok("forged"));
        assert!(Session::verify(&[8u8; 32], &value, now).is_none(), "another key");
        assert!(Session::verify(&key, &value, now.plus(SESSION_TTL)).is_none(), "expired");
        let tampered = value.replacen(|c: char| c.is_ascii_digit(), "9", 1);
        assert!(Session::verify(&key, &tampered, now).is_none(), "expiry moved");
        assert!(Session::verify(&key, "garbage", now).is_none());
    }

    #[test]
    fn the_key_changes_with_the_password() {
        let a = derive_key(Some(&Secret::from("one")), b"server");
        assert_ne!(a, derive_key(Some(&Secret::from("two")), b"server"));
        assert_ne!(a, derive_key(Some(&Secret::from("one")), b"other"));
    }
}
