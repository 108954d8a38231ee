//! Security headers. Every response is `nosniff` (a JSON error is never sniffed into HTML);
//! the pages a browser renders — the dashboard, `/docs`, `/demo` — also get a
//! Content-Security-Policy that admits only this origin and the page's own inline `<script>`
//! and `<style>` elements by their SHA-256 hashes, may not be framed, and send no referrer to
//! other origins.

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use poem::{
    Request,
    http::{HeaderValue, header},
    middleware::SetHeader,
};
use sha2::{Digest, Sha256};

/// On every response.
pub fn everywhere() -> SetHeader {
    SetHeader::new().overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"))
}

/// On a page whose inline scripts and styles are those of `html` (a page without any gets a
/// policy of this origin only).
pub fn page(html: &str) -> SetHeader {
    let csp = HeaderValue::from_str(&policy(html)).expect("a policy is ASCII");
    SetHeader::new()
        .overriding(header::CONTENT_SECURITY_POLICY, csp)
        .overriding(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"))
        // For browsers that predate `frame-ancestors`.
        .overriding(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"))
}

fn policy(html: &str) -> String {
    let hashes = |tag| inline_elements(html, tag).map(|body| format!(" 'sha256-{}'", B64.encode(Sha256::digest(body)))).collect::<String>();
    format!(
        "default-src 'self'; script-src 'self'{}; style-src 'self'{}; img-src 'self' data:; object-src 'none'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        hashes("script"),
        hashes("style")
    )
}

/// The bodies of `html`'s `<tag>` elements that carry their content inline (a `<script src>` is
/// allowed by `'self'`, not by a hash). Read in order, so a `"<script"` inside a script's text
/// is not taken for an element.
fn inline_elements<'a>(html: &'a str, tag: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    let (open, close) = (format!("<{tag}"), format!("</{tag}>"));
    let mut rest = html;
    std::iter::from_fn(move || {
        loop {
            let start = rest.find(&open)?;
            let after = &rest[start + open.len()..];
            let tag_end = after.find('>')?;
            let attributes = &after[..tag_end];
            let content = &after[tag_end + 1..];
            let end = content.find(&close)?;
            rest = &content[end + close.len()..];
            if !attributes.contains("src=") {
                return Some(&content[..end]);
            }
        }
    })
}

/// Whether the browser reached this server over HTTPS: a TLS listener, or a trusted proxy
/// saying so in `X-Forwarded-Proto` (its first entry is the scheme the client used).
pub fn over_https(req: &Request, trusted_proxies: &[ipnet::IpNet]) -> bool {
    if req.scheme() == &poem::http::uri::Scheme::HTTPS {
        return true;
    }
    let peer_trusted = req.remote_addr().as_socket_addr().is_some_and(|a| trusted_proxies.iter().any(|net| net.contains(&a.ip())));
    peer_trusted
        && req.header("x-forwarded-proto").and_then(|v| v.split(',').next()).is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_scripts_and_styles_are_hashed_and_external_ones_are_not() {
        let html = "<style>a{}</style><script src=\"/x.js\"></script><script>let s = \"<script\";</script><script defer>go()</script>";
        let bodies: Vec<_> = inline_elements(html, "script").collect();
        assert_eq!(bodies, ["let s = \"<script\";", "go()"]);
        let csp = policy(html);
        let hash = |s: &str| format!("'sha256-{}'", B64.encode(Sha256::digest(s)));
        assert!(csp.contains(&format!("script-src 'self' {} {};", hash(bodies[0]), hash("go()"))), "{csp}");
        assert!(csp.contains(&format!("style-src 'self' {};", hash("a{}"))), "{csp}");
        assert_eq!(policy("<p>no inline</p>").split("; ").nth(1), Some("script-src 'self'"));
    }
}
