//! The events the platforms send the app on their own (platform-spec.md, "Events the platforms
//! send"): when a user revokes consent (the `consent_revoked` switch turning on), Meta's
//! deauthorize callback or TikTok's `authorization.removed` webhook; when a user deletes their
//! account (`account_deleted`), Meta's data deletion callback or the webhook with reason 2 —
//! signed with the app's
//! secret, to the URL in the settings — or wrong on purpose (`event_delivery`). Each sending is
//! logged with the app's answer (`GET /_admin/deliveries`).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::{
    INSTAGRAM_CLIENT_SECRET, Sandbox, TIKTOK_CLIENT_KEY, TIKTOK_CLIENT_SECRET,
    state::{Delivery, EventDelivery, Net, State, real_now_ms},
};

/// A request to send, built under the world's lock and sent after it.
pub struct Outgoing {
    net: Net,
    account: String,
    event: &'static str,
    url: String,
    content_type: &'static str,
    signature: Option<String>,
    body: Vec<u8>,
    copies: usize,
}

fn mac(secret: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// The event `account` revoking the app (or, `deleted`, deleting their account) makes, if the
/// app gave a URL for it.
pub fn revoked(s: &State, net: Net, account: &str, deleted: bool) -> Option<Outgoing> {
    let how = s.settings.event_delivery;
    let now_s = s.now_ms() / 1000 - if how == EventDelivery::Stale { 600 } else { 0 };
    let copies = if how == EventDelivery::Duplicate { 2 } else { 1 };
    let secret = |real: &'static str| if how == EventDelivery::BadSignature { "not-the-app-secret" } else { real };
    match net {
        Net::Instagram => {
            let (url, event) = if deleted {
                (s.settings.instagram_data_deletion_url.clone()?, "data_deletion")
            } else {
                (s.settings.instagram_deauthorize_url.clone()?, "deauthorize")
            };
            let payload = URL_SAFE_NO_PAD.encode(json!({ "algorithm": "HMAC-SHA256", "issued_at": now_s, "user_id": account }).to_string());
            let sig = URL_SAFE_NO_PAD.encode(mac(secret(INSTAGRAM_CLIENT_SECRET), &[payload.as_bytes()]));
            let body = url::form_urlencoded::Serializer::new(String::new()).append_pair("signed_request", &format!("{sig}.{payload}")).finish();
            Some(Outgoing { net, account: account.into(), event, url, content_type: "application/x-www-form-urlencoded", signature: None, body: body.into_bytes(), copies })
        }
        Net::Tiktok => {
            let url = s.settings.tiktok_webhook_url.clone()?;
            let body = json!({
                "client_key": TIKTOK_CLIENT_KEY,
                "event": "authorization.removed",
                "create_time": now_s,
                "user_openid": account,
                "content": json!({ "reason": if deleted { 2 } else { 1 } }).to_string(),
            })
            .to_string();
            let s: String = mac(secret(TIKTOK_CLIENT_SECRET), &[now_s.to_string().as_bytes(), b".", body.as_bytes()]).iter().map(|b| format!("{b:02x}")).collect();
            Some(Outgoing { net, account: account.into(), event: "authorization.removed", url, content_type: "application/json", signature: Some(format!("t={now_s},s={s}")), body: body.into_bytes(), copies })
        }
    }
}

/// Sends `out` in the background and logs each copy with the app's answer.
pub fn send(sandbox: Sandbox, out: Outgoing) {
    tokio::spawn(async move {
        let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build().expect("an HTTP client");
        for _ in 0..out.copies {
            let mut req = http.post(&out.url).header("content-type", out.content_type).body(out.body.clone());
            if let Some(sig) = &out.signature {
                req = req.header("TikTok-Signature", sig);
            }
            let sent_ms = real_now_ms();
            let (status, answer, error) = match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    (Some(status), resp.json::<serde_json::Value>().await.ok(), None)
                }
                Err(e) => (None, None, Some(e.without_url().to_string())),
            };
            tracing::info!(target: "sandbox", event = out.event, status = ?status, "sandbox sent a platform event");
            let mut s = sandbox.lock();
            let seq = s.deliveries.len() as u64 + 1;
            s.deliveries.push(Delivery { seq, net: out.net, account: out.account.clone(), event: out.event, url: out.url.clone(), status, answer, error, sent_ms });
        }
    });
}
