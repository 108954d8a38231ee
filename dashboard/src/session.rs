//! Who may use the dashboard.
//!
//! A sign-in — a name and password of `OPS_USERS` ([`crate::operators`]), or the shared
//! `OPS_PASSWORD` as [`SHARED`] — sets a session cookie: `{expires}.{who}.{nonce}.{mac}`, an
//! HMAC over the first three parts with the dashboard's session key (`who` in base64). Nothing
//! is stored server-side, so any API process verifies any session. Each form carries a CSRF
//! token derived from the session's nonce; the cookie is also `SameSite=Strict` and `HttpOnly`.
//!
//! Failed sign-ins count against the API's `auth` limit ([`crate::LoginThrottle`]); each
//! sign-in, and each failed one, is in the audit trail.

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

use crate::{
    BASE, Dashboard,
    operators::{self, Operator, SHARED},
    page,
};

/// How the dashboard is reached.
#[derive(Clone, Debug)]
pub enum Access {
    /// Sign in: by name with an `OPS_USERS` password, or with the shared `OPS_PASSWORD` (when
    /// set) as [`SHARED`].
    SignIn { operators: Vec<Operator>, shared: Option<Secret> },
    /// No sign-in (development: `socialsync up` without `OPS_PASSWORD` or `OPS_USERS`).
    Open,
    /// Off: neither is set in production. Every page says how to turn it on.
    Off,
}

impl Access {
    /// Sign-in with the shared password only.
    pub fn password(p: Secret) -> Access {
        Access::SignIn { operators: vec![], shared: Some(p) }
    }
}


const COOKIE: &str = "socialsync_ops";
/// How long a login lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// A verified session, attached to the request for the pages.
#[derive(Clone, Debug)]
pub struct Session {
    /// The CSRF token every form of this session carries.
    pub csrf: String,
    /// Who signed in: an operator's name, or [`SHARED`] (the shared password, or no sign-in).
    pub who: String,
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
    fn new(key: &[u8; 32], nonce: &str, who: String) -> Session {
        let csrf = B64.encode(mac(key, &["csrf", nonce]));
        Session { csrf, who }
    }

    /// A fresh session of `who` and its cookie value.
    fn issue(key: &[u8; 32], who: &str, now: Timestamp) -> (Session, String) {
        let nonce = B64.encode(jobs::vault::random_bytes::<18>());
        let expires = now.plus(SESSION_TTL).millis().to_string();
        let who_b64 = B64.encode(who);
        let sig = B64.encode(mac(key, &["session", &expires, &who_b64, &nonce]));
        (Session::new(key, &nonce, who.to_owned()), format!("{expires}.{who_b64}.{nonce}.{sig}"))
    }

    fn verify(key: &[u8; 32], value: &str, now: Timestamp) -> Option<Session> {
        let mut parts = value.splitn(4, '.');
        let (expires, who_b64, nonce, sig) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let sig = B64.decode(sig).ok()?;
        let expected = mac(key, &["session", expires, who_b64, nonce]);
        if !bool::from(expected.ct_eq(&sig)) || expires.parse::<i64>().ok()? <= now.millis() {
            return None;
        }
        let who = String::from_utf8(B64.decode(who_b64).ok()?).ok()?;
        Some(Session::new(key, nonce, who))
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
            let (s, value) = Session::issue(key, SHARED, now);
            let cookie = set_cookie(&d, &req, &value, SESSION_TTL);
            req.extensions_mut().insert(s);
            let mut resp = next.call(req).await?.into_response();
            if let Ok(v) = cookie.parse() {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
            Ok(resp)
        }
        (Access::SignIn { .. }, None) => {
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
    match &d.config.access {
        Access::SignIn { operators, .. } => login_form(!operators.is_empty(), None, StatusCode::OK),
        Access::Open => redirect(&format!("{BASE}/")),
        Access::Off => page::off().into_response(),
    }
}

/// The sign-in form; with named operators, a name field too.
fn login_form(named: bool, error: Option<&str>, status: StatusCode) -> Response {
    let body = html! {
        form.login method="post" action={(BASE) "/login"} {
            h1 { "socialsync ops" }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            @if named { label { "Name " input type="text" name="name" autofocus autocomplete="username"; } }
            label { "Password " input type="password" name="password" autofocus[!named] required autocomplete="current-password"; }
            button type="submit" { "Sign in" }
        }
    };
    let mut resp = page::bare("Sign in", body).into_response();
    resp.set_status(status);
    resp
}

#[derive(Deserialize)]
pub struct LoginForm {
    /// An `OPS_USERS` name; empty for the shared password.
    #[serde(default)]
    name: String,
    password: String,
}

#[handler]
pub async fn login(req: &Request, d: Data<&Dashboard>, form: Form<LoginForm>) -> Response {
    let Access::SignIn { operators, shared } = &d.config.access else { return redirect(&format!("{BASE}/")) };
    let named = !operators.is_empty();
    let name = form.name.trim().chars().take(64).collect::<String>();
    let dash: &Dashboard = &d;
    let audit = |action: &'static str, outcome: &'static str| {
        let who = if name.is_empty() { SHARED.to_owned() } else { name.clone() };
        async move { crate::audit::record(dash, &who, action, "the dashboard", outcome).await }
    };
    let locked_out = |after: Duration| {
        let minutes = after.as_secs().div_ceil(60);
        let mut resp = login_form(named, Some(&format!("Too many failed sign-ins from this address. Try again in {minutes} min.")), StatusCode::TOO_MANY_REQUESTS);
        if let Ok(v) = after.as_secs().to_string().parse() {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    };
    if let Some(t) = &d.throttle {
        if let Some(after) = t.locked(req).await {
            audit("sign_in.failed", "refused: too many failed sign-ins from this address").await;
            return locked_out(after);
        }
    }
    let signed_in = if name.is_empty() {
        shared.as_ref().is_some_and(|p| bool::from(form.password.as_bytes().ct_eq(p.expose().as_bytes())))
    } else {
        let (operators, name, password) = (operators.clone(), name.clone(), form.password.clone());
        tokio::task::spawn_blocking(move || operators::verify(&operators, &name, &password)).await.unwrap_or(false)
    };
    if !signed_in {
        tracing::warn!(target: "dashboard", name = %name, "failed dashboard sign-in");
        audit("sign_in.failed", "refused: wrong name or password").await;
        if let Some(t) = &d.throttle {
            if let Some(after) = t.failed(req).await {
                return locked_out(after);
            }
        }
        let says = if named { "Wrong name or password." } else { "Wrong password." };
        return login_form(named, Some(says), StatusCode::UNAUTHORIZED);
    }
    let who = if name.is_empty() { SHARED } else { name.as_str() };
    let (_, value) = Session::issue(&d.config.session_key, who, Timestamp::now());
    tracing::info!(target: "dashboard", who, "dashboard sign-in");
    audit("sign_in", "ok").await;
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
        let (s, value) = Session::issue(&key, "ana", now);
        let back = Session::verify(&key, &value, now.plus(Duration::from_secs(60))).expect("valid");
        assert_eq!((back.csrf.as_str(), back.who.as_str()), (s.csrf.as_str(), "ana"));
        let mut parts: Vec<String> = value.split('.').map(str::to_owned).collect();
        parts[1] = B64.encode("bo");
        assert!(Session::verify(&key, &parts.join("."), now).is_none(), "another name under the same signature");
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
