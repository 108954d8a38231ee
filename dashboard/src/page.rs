//! The shell every page shares (navigation, notices, the sign-out form), formatting helpers,
//! and the embedded CSS and JS.

use jobs::Timestamp;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use poem::{Request, Response, handler, http::header, web::Html};
use serde::Deserialize;

use crate::{BASE, session::Session};

const CSS: &str = include_str!("../assets/dashboard.css");
const JS: &str = include_str!("../assets/dashboard.js");

#[handler]
pub fn css() -> Response {
    asset(CSS, "text/css; charset=utf-8")
}

#[handler]
pub fn js() -> Response {
    asset(JS, "text/javascript; charset=utf-8")
}

fn asset(body: &'static str, kind: &str) -> Response {
    Response::builder().header(header::CONTENT_TYPE, kind).header(header::CACHE_CONTROL, "public, max-age=300").body(body)
}

/// The outcome of the last action, carried back in the query string.
#[derive(Debug, Default, Deserialize)]
pub struct Flash {
    pub notice: Option<String>,
    pub error: Option<String>,
}

/// A page: the navigation, the flash, then `body`.
pub fn shell(req: &Request, title: &str, flash: &Flash, body: Markup) -> Html<String> {
    let session = req.extensions().get::<Session>();
    let path = req.original_uri().path(); // uri() is relative to where the dashboard is nested
    let nav = [("Overview", "/"), ("Jobs", "/jobs"), ("Cron", "/cron"), ("Workers", "/workers"), ("Accounts", "/accounts"), ("Health", "/health"), ("Audit", "/audit")];
    let doc = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · socialsync ops" }
                link rel="stylesheet" href={(BASE) "/assets/dashboard.css"};
                script src={(BASE) "/assets/dashboard.js"} defer {}
            }
            body data-base=(BASE) {
                header {
                    strong { "socialsync ops" }
                    nav {
                        @for (name, href) in nav {
                            @let full = format!("{BASE}{href}");
                            @let current = path == full || (href != "/" && path.starts_with(&full));
                            a href=(full) aria-current=[current.then_some("page")] { (name) }
                        }
                    }
                    @if let Some(s) = session {
                        form.logout method="post" action={(BASE) "/logout"} {
                            input type="hidden" name="csrf" value=(s.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                (crate::pauses_panel::banner(req))
                main {
                    h1 { (title) }
                    @if let Some(n) = &flash.notice { p.notice role="status" { (n) } }
                    @if let Some(e) = &flash.error { p.error role="alert" { (e) } }
                    (body)
                }
            }
        }
    };
    Html(doc.into_string())
}

/// A page without navigation (sign-in, the "dashboard is off" page).
pub fn bare(title: &str, body: Markup) -> Html<String> {
    let doc = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · socialsync ops" }
                link rel="stylesheet" href={(BASE) "/assets/dashboard.css"};
            }
            body.bare { main { (body) } }
        }
    };
    Html(doc.into_string())
}

pub fn off() -> Html<String> {
    bare("Dashboard off", html! {
        h1 { "The dashboard is off" }
        p { "Set " code { "OPS_USERS" } " (" code { "socialsync ops add-user NAME" } " prints an entry) or " code { "OPS_PASSWORD" } " to turn it on, then sign in." }
    })
}

/// A page whose database read failed: 503 with a sentence, the cause logged.
pub fn unavailable(e: jobs::StoreError) -> poem::Error {
    tracing::warn!(target: "dashboard", error = %e, "dashboard query failed");
    poem::Error::from_string("The database did not answer; try again.", poem::http::StatusCode::SERVICE_UNAVAILABLE)
}

/// An action form's fields (trimmed) and the session that posted it, once its CSRF token
/// matches and the dashboard is not read-only; otherwise why not, for the page it goes back to.
pub async fn action_form(req: &Request, d: &crate::Dashboard, body: poem::Body) -> Result<(ActionForm, Session), &'static str> {
    let bytes = body.into_bytes().await.unwrap_or_default();
    let form = ActionForm(url::form_urlencoded::parse(&bytes).into_owned().collect());
    let Some(session) = req.extensions().get::<Session>().filter(|s| s.csrf_ok(form.get("csrf"))) else {
        return Err("This form expired (security token mismatch); reload the page and try again.");
    };
    if d.config.read_only {
        return Err("The dashboard is read-only.");
    }
    Ok((form, session.clone()))
}

/// A posted form's fields.
pub struct ActionForm(std::collections::HashMap<String, String>);

impl ActionForm {
    /// A field, trimmed; empty when absent.
    pub fn get(&self, k: &str) -> &str {
        self.0.get(k).map_or("", |v| v.trim())
    }
}

/// The hidden CSRF field of a form.
pub fn csrf_field(req: &Request) -> Markup {
    let token = req.extensions().get::<Session>().map(|s| s.csrf.clone()).unwrap_or_default();
    html! { input type="hidden" name="csrf" value=(token); }
}

/// `2026-11-26 19:42:07` (UTC).
pub fn when(t: Timestamp) -> String {
    t.to_datetime().format("%Y-%m-%d %H:%M:%S").to_string()
}

pub fn when_opt(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "—".into(), when)
}

/// A duration in the largest sensible unit: `850 ms`, `12.4 s`, `3 min`, `5 h`, `2 d`.
pub fn span_ms(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..7_200_000 => format!("{} min", ms / 60_000),
        7_200_000..172_800_000 => format!("{} h", ms / 3_600_000),
        _ => format!("{} d", ms / 86_400_000),
    }
}

/// `in 3 min` / `5 s ago`.
pub fn relative(t: Timestamp, now: Timestamp) -> String {
    let d = t.millis() - now.millis();
    if d >= 0 { format!("in {}", span_ms(d)) } else { format!("{} ago", span_ms(-d)) }
}

/// A query string of the non-empty pairs.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
}

/// Percent-encodes a query value.
pub fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Appends `notice=` or `error=` to a same-dashboard URL.
pub fn with_flash(back: &str, key: &str, message: &str) -> String {
    let sep = if back.contains('?') { '&' } else { '?' };
    format!("{back}{sep}{key}={}", encode(message))
}

/// Only a path inside the dashboard may be redirected to (no open redirect).
pub fn safe_back(back: Option<&str>, fallback: &str) -> String {
    match back {
        Some(b) if b.starts_with(BASE) && !b.starts_with("//") && !b.contains("://") => {
            // Drop any earlier flash so notices do not pile up.
            let (path, q) = b.split_once('?').unwrap_or((b, ""));
            let kept: Vec<&str> = q.split('&').filter(|p| !p.is_empty() && !p.starts_with("notice=") && !p.starts_with("error=")).collect();
            if kept.is_empty() { path.to_owned() } else { format!("{path}?{}", kept.join("&")) }
        }
        _ => fallback.to_owned(),
    }
}

/// Raw markup known to be safe (our own SVG).
pub fn raw(s: String) -> PreEscaped<String> {
    PreEscaped(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_links_stay_inside_the_dashboard() {
        assert_eq!(safe_back(Some("https://evil.example/x"), "/dashboard/jobs"), "/dashboard/jobs");
        assert_eq!(safe_back(Some("/dashboard/jobs?state=dead&notice=old"), "/"), "/dashboard/jobs?state=dead");
        assert_eq!(with_flash("/dashboard/jobs?state=dead", "notice", "Retried 2 jobs"), "/dashboard/jobs?state=dead&notice=Retried%202%20jobs");
        assert_eq!(query(&[("queue", "sync"), ("state", "")]), "?queue=sync");
    }

    #[test]
    fn spans_read_naturally() {
        assert_eq!(span_ms(850), "850 ms");
        assert_eq!(span_ms(12_400), "12.4 s");
        assert_eq!(span_ms(180_000), "3 min");
        assert_eq!(span_ms(5 * 3_600_000), "5 h");
        assert_eq!(relative(Timestamp(0), Timestamp(5_000)), "5.0 s ago");
    }
}
