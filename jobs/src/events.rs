//! `event`: what the platforms tell the app on their own (platform-spec.md, "Events the
//! platforms send") — verified here, stored by the API in `platform_events`, acted on by this
//! job: a user's revocation of the app (Meta's deauthorize callback, TikTok's
//! `authorization.removed`), and a request to delete their data (Meta's data deletion callback,
//! TikTok's `authorization.removed` for a deleted account).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;

use crate::{
    domain::Platform,
    job::{JobContext, JobError, Outcome},
    secret::Secret,
    store::NewJob,
    time::Timestamp,
};

/// The queue name. Stored in every queued job: never rename.
pub const KIND: &str = "event";
/// A deletion must finish: with the backoff capped at an hour, attempts span about a day.
pub const MAX_ATTEMPTS: i32 = 30;

/// Why an event was refused, with the stable code the API answers.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    /// The body is not what the platform sends.
    #[error("malformed event: {0}")]
    Malformed(&'static str),
    /// The signature does not verify, or names another algorithm.
    #[error("the event's signature does not verify")]
    BadSignature,
    /// Signed too long ago (or in the future): a replay.
    #[error("the event's timestamp is outside the tolerance")]
    Stale,
}

impl EventError {
    pub fn code(&self) -> &'static str {
        match self {
            EventError::Malformed(_) => "EVENT_MALFORMED",
            EventError::BadSignature => "EVENT_SIGNATURE_INVALID",
            EventError::Stale => "EVENT_STALE",
        }
    }
}

/// A verified event, as stored in the inbox: no secret, nothing the platform did not send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformEvent {
    pub platform: Platform,
    /// `revoked` (the user removed the app), or another kind acknowledged and ignored.
    pub kind: String,
    pub platform_user_id: String,
    /// Why, in words (TikTok's reason code named; Meta sends none).
    pub reason: Option<String>,
    /// The same event delivered twice has the same key.
    pub event_key: String,
    pub issued_at: Timestamp,
}

pub const REVOKED: &str = "revoked";
/// The user asked for their data to be deleted: the account is erased.
pub const DELETED: &str = "deleted";

/// Meta's `signed_request` (`<sig>.<payload>`, base64url without padding; `sig` = HMAC-SHA256
/// of the encoded payload with the app secret): its payload, once the algorithm and the
/// signature are checked (in constant time).
pub fn verify_signed_request(app_secret: &Secret, signed_request: &str) -> Result<Value, EventError> {
    let (sig, payload) = signed_request.split_once('.').ok_or(EventError::Malformed("signed_request is not <sig>.<payload>"))?;
    let sig = URL_SAFE_NO_PAD.decode(sig.trim_end_matches('=')).map_err(|_| EventError::Malformed("signature is not base64url"))?;
    let json = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).map_err(|_| EventError::Malformed("payload is not base64url"))?;
    let value: Value = serde_json::from_slice(&json).map_err(|_| EventError::Malformed("payload is not JSON"))?;
    if !value["algorithm"].as_str().is_some_and(|a| a.eq_ignore_ascii_case("HMAC-SHA256")) {
        return Err(EventError::BadSignature);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(app_secret.expose().as_bytes()).expect("HMAC takes any key length");
    mac.update(payload.as_bytes());
    mac.verify_slice(&sig).map_err(|_| EventError::BadSignature)?;
    Ok(value)
}

/// Meta's deauthorize callback: the user removed the app.
pub fn instagram_deauthorize(app_secret: &Secret, signed_request: &str) -> Result<PlatformEvent, EventError> {
    instagram_event(app_secret, signed_request, false)
}

/// Meta's data deletion callback: the user asked for their data to be deleted.
pub fn instagram_data_deletion(app_secret: &Secret, signed_request: &str) -> Result<PlatformEvent, EventError> {
    instagram_event(app_secret, signed_request, true)
}

fn instagram_event(app_secret: &Secret, signed_request: &str, deletion: bool) -> Result<PlatformEvent, EventError> {
    let payload = verify_signed_request(app_secret, signed_request)?;
    let user = match &payload["user_id"] {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(EventError::Malformed("payload has no user_id")),
    };
    let issued = payload["issued_at"].as_i64().ok_or(EventError::Malformed("payload has no issued_at"))?;
    let (kind, callback, reason) = if deletion {
        (DELETED, "data_deletion", "the user asked Instagram to delete their data")
    } else {
        (REVOKED, "deauthorize", "the user removed the app in Instagram")
    };
    Ok(PlatformEvent {
        platform: Platform::Instagram,
        kind: kind.into(),
        event_key: format!("instagram:{callback}:{user}:{issued}"),
        platform_user_id: user,
        reason: Some(reason.into()),
        issued_at: Timestamp::from_secs(issued),
    })
}

#[derive(Deserialize)]
struct TiktokBody {
    event: String,
    create_time: i64,
    user_openid: String,
    #[serde(default)]
    content: Option<String>,
}

/// TikTok's webhook: `TikTok-Signature: t=<unix s>,s=<hex>` with `s` = HMAC-SHA256 of
/// `"<t>.<raw body>"` keyed with the client secret; `t` within `tolerance_secs` of `now`.
pub fn tiktok_webhook(client_secret: &Secret, header: Option<&str>, body: &[u8], now: Timestamp, tolerance_secs: i64) -> Result<PlatformEvent, EventError> {
    let header = header.ok_or(EventError::BadSignature)?;
    let (mut t, mut s) = (None, None);
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("s", v)) => s = hex(v),
            _ => {}
        }
    }
    let (Some(t), Some(s)) = (t, s) else { return Err(EventError::BadSignature) };
    let mut mac = Hmac::<Sha256>::new_from_slice(client_secret.expose().as_bytes()).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&s).map_err(|_| EventError::BadSignature)?;
    if (now.millis() / 1000 - t).abs() > tolerance_secs {
        return Err(EventError::Stale);
    }
    let b: TiktokBody = serde_json::from_slice(body).map_err(|_| EventError::Malformed("not a TikTok event"))?;
    let reason_code = b.content.as_deref().and_then(|c| serde_json::from_str::<Value>(c).ok()).and_then(|c| c["reason"].as_i64());
    let kind = match (b.event.as_str(), reason_code) {
        // Reason 2: the user deleted their TikTok account; their data goes with it.
        ("authorization.removed", Some(2)) => DELETED.to_owned(),
        ("authorization.removed", _) => REVOKED.to_owned(),
        _ => b.event.clone(),
    };
    Ok(PlatformEvent {
        platform: Platform::Tiktok,
        kind,
        event_key: format!("tiktok:{}:{}:{}", b.event, b.user_openid, b.create_time),
        platform_user_id: b.user_openid,
        reason: reason_code.map(tiktok_reason),
        issued_at: Timestamp::from_secs(b.create_time),
    })
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// TikTok's `authorization.removed` reasons (platform-spec.md).
fn tiktok_reason(code: i64) -> String {
    match code {
        1 => "the user disconnected the app in TikTok",
        2 => "the user deleted their TikTok account",
        3 => "the user's age changed",
        4 => "the TikTok account was banned",
        5 => "the developer revoked the authorization",
        _ => "TikTok gave no reason",
    }
    .into()
}

/// Stored in the queue; outlives deploys. Add fields only with `#[serde(default)]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyEvent {
    pub event_id: i64,
}

pub fn job(event_id: i64, now: Timestamp) -> NewJob {
    NewJob {
        queue: KIND,
        payload: serde_json::to_value(ApplyEvent { event_id }).expect("serializes"),
        run_at: now,
        max_attempts: MAX_ATTEMPTS,
        dedup_key: Some(format!("{KIND}:{event_id}")),
    }
}

/// Applies a stored event once. A revocation takes the account out of `active`, erases its
/// tokens, cancels its waiting refresh and sync, and notifies its user; a deletion erases the
/// account (tokens, snapshots, posts, personal fields). Each is one transaction and a no-op the
/// second time, so a retry after a crash finishes the work.
pub async fn run(args: ApplyEvent, cx: &JobContext) -> Result<Outcome, JobError> {
    let Some(event) = cx.store.platform_event(args.event_id).await? else { return Ok(Outcome::Skipped("event is gone".into())) };
    if event.processed_at.is_some() {
        return Ok(Outcome::Skipped("already applied".into()));
    }
    let now = cx.now();
    cx.store.mark_event_started(event.id, now).await?;
    let account = cx.store.account_by_platform_user(event.platform, &event.platform_user_id).await?;
    let outcome = match (event.kind.as_str(), account) {
        (REVOKED | DELETED, None) => {
            tracing::info!(target: "events", platform = %event.platform, event_id = event.id, kind = %event.kind, "event for an account not connected here; nothing to do");
            Outcome::Skipped("no such account".into())
        }
        (REVOKED, Some(account)) => {
            let reason = event.reason.clone().unwrap_or_else(|| "revoked at the platform".into());
            if let Some(id) = cx.store.revoke_account(&account, &reason, now).await? {
                cx.enqueue(crate::notify::job(id, now)).await?;
            }
            tracing::info!(target: "events", account_id = %account.id, platform = %account.platform, %reason, "access revoked at the platform; tokens erased");
            Outcome::Done(format!("account {} revoked: {reason}", account.id))
        }
        (DELETED, Some(account)) => {
            revoke_grant(cx, &account).await;
            cx.store.erase_account(account.id, now).await?;
            tracing::info!(target: "events", account_id = %account.id, platform = %account.platform, "account erased at the user's request");
            Outcome::Done(format!("account {} erased", account.id))
        }
        (other, _) => Outcome::Skipped(format!("{other} events are acknowledged and ignored")),
    };
    cx.store.mark_event_processed(event.id, now).await?;
    Ok(outcome)
}

/// Withdraws the grant at the platform before its tokens are erased (where the platform has a
/// revoke call; a user who deleted their account there has none left to withdraw). Best
/// effort: the erasure must not wait on a platform that is down.
async fn revoke_grant(cx: &JobContext, a: &crate::store::Account) {
    let Some(sealed) = &a.access_token else { return };
    let aad = crate::vault::Aad::account(a.platform, &a.platform_user_id, "access_token");
    match cx.vault.open(&aad, sealed) {
        Ok(token) => {
            if let Err(e) = cx.clients.get(a.platform).revoke(&token).await {
                tracing::warn!(target: "events", account_id = %a.id, error = %e, "revoking at the platform failed; erasing anyway");
            }
        }
        Err(e) => tracing::warn!(target: "events", account_id = %a.id, error = %e, "stored token unreadable; erasing without revoking"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(secret: &str, payload: &Value) -> String {
        let encoded = URL_SAFE_NO_PAD.encode(payload.to_string());
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(encoded.as_bytes());
        format!("{}.{encoded}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    fn tiktok_sig(secret: &str, t: i64, body: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.{body}").as_bytes());
        let s: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        format!("t={t},s={s}")
    }

    #[test]
    fn meta_signed_requests_verify_only_with_the_app_secret_and_its_algorithm() {
        let secret = Secret::from("app-secret");
        let payload = serde_json::json!({ "algorithm": "HMAC-SHA256", "issued_at": 1_800_000_000, "user_id": "17841400000001" });
        let event = instagram_deauthorize(&secret, &signed("app-secret", &payload)).unwrap();
        assert_eq!((event.platform, event.kind.as_str(), event.platform_user_id.as_str()), (Platform::Instagram, REVOKED, "17841400000001"));
        assert_eq!(event.event_key, "instagram:deauthorize:17841400000001:1800000000");
        assert_eq!(instagram_deauthorize(&secret, &signed("other", &payload)), Err(EventError::BadSignature));
        let other_alg = serde_json::json!({ "algorithm": "none", "issued_at": 1, "user_id": "1" });
        assert_eq!(instagram_deauthorize(&secret, &signed("app-secret", &other_alg)), Err(EventError::BadSignature));
        let good = signed("app-secret", &payload);
        for bad in ["", "nodot", &good[..good.len() - 3], "%%%.%%%"] {
            assert!(instagram_deauthorize(&secret, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tiktok_webhooks_verify_their_signature_and_timestamp() {
        let secret = Secret::from("client-secret");
        let body = r#"{"client_key":"ck","event":"authorization.removed","create_time":1800000000,"user_openid":"open-1","content":"{\"reason\":1}"}"#;
        let now = Timestamp::from_secs(1_800_000_100);
        let event = tiktok_webhook(&secret, Some(&tiktok_sig("client-secret", 1_800_000_090, body)), body.as_bytes(), now, 300).unwrap();
        assert_eq!((event.kind.as_str(), event.platform_user_id.as_str()), (REVOKED, "open-1"));
        assert_eq!(event.reason.as_deref(), Some("the user disconnected the app in TikTok"));
        let sig = tiktok_sig("client-secret", 1_800_000_090, body);
        assert_eq!(tiktok_webhook(&secret, Some(&tiktok_sig("wrong", 1_800_000_090, body)), body.as_bytes(), now, 300), Err(EventError::BadSignature));
        assert_eq!(tiktok_webhook(&secret, Some(&sig), &body.as_bytes()[..body.len() - 1], now, 300), Err(EventError::BadSignature));
        assert_eq!(tiktok_webhook(&secret, None, body.as_bytes(), now, 300), Err(EventError::BadSignature));
        let stale = Timestamp::from_secs(1_800_000_090 + 301);
        assert_eq!(tiktok_webhook(&secret, Some(&sig), body.as_bytes(), stale, 300), Err(EventError::Stale));
        let other = r#"{"client_key":"ck","event":"video.publish.completed","create_time":1800000000,"user_openid":"open-1","content":"{}"}"#;
        let e = tiktok_webhook(&secret, Some(&tiktok_sig("client-secret", 1_800_000_090, other)), other.as_bytes(), now, 300).unwrap();
        assert_eq!(e.kind, "video.publish.completed");
    }
}
