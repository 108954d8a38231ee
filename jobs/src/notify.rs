//! `notify`: delivers one outbox notification to the platform's webhook, signed.
//!
//! The request carries `X-Socialsync-Timestamp` (Unix seconds) and `X-Socialsync-Signature:
//! sha256=<hex HMAC-SHA256 of "{timestamp}.{body}" under NOTIFY_WEBHOOK_SECRET>`; a receiver
//! recomputes it and rejects stale timestamps.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::{
    job::{JobContext, JobError, Outcome},
    secret::Secret,
    store::NewJob,
    time::Timestamp,
};

/// The queue name. Stored in every queued job: never rename.
pub const KIND: &str = "notify";
pub const MAX_ATTEMPTS: i32 = 10;

/// Stored in the queue; outlives deploys. Add fields only with `#[serde(default)]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverNotification {
    pub notification_id: i64,
}

pub fn job(notification_id: i64, now: Timestamp) -> NewJob {
    NewJob {
        queue: KIND,
        payload: serde_json::to_value(DeliverNotification { notification_id }).expect("serializes"),
        run_at: now,
        max_attempts: MAX_ATTEMPTS,
        dedup_key: Some(format!("{KIND}:{notification_id}")),
    }
}

/// `sha256=<hex>` of `"{timestamp}.{body}"`.
pub fn signature(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

pub async fn run(args: DeliverNotification, cx: &JobContext) -> Result<Outcome, JobError> {
    let Some(note) = cx.store.notification(args.notification_id).await? else {
        return Ok(Outcome::Skipped("notification is gone".into()));
    };
    if note.delivered_at.is_some() {
        return Ok(Outcome::Skipped("already delivered".into()));
    }
    let (Some(url), Some(secret)) = (&cx.settings.notify_webhook_url, &cx.settings.notify_webhook_secret) else {
        return Ok(Outcome::Skipped("no webhook configured; the API still lists it".into()));
    };
    let body = serde_json::to_vec(&serde_json::json!({
        "id": note.id,
        "user_id": note.user_id,
        "account_id": note.account_id,
        "kind": note.kind,
        "payload": note.payload_json(),
        "created_at": note.created_at.to_string(),
    }))
    .expect("serializes");
    let ts = cx.now().millis() / 1000;
    let sent = cx
        .http
        .post(url)
        .header("content-type", "application/json")
        .header("x-socialsync-timestamp", ts.to_string())
        .header("x-socialsync-signature", signature(secret, ts, &body))
        .body(body)
        .send()
        .await;
    let error = match sent {
        Ok(r) if r.status().is_success() => None,
        Ok(r) => Some(format!("webhook answered HTTP {}", r.status().as_u16())),
        Err(e) => Some(format!("webhook unreachable: {}", e.without_url())),
    };
    cx.store.record_delivery(note.id, error.as_deref(), cx.now()).await?;
    match error {
        None => Ok(Outcome::Done("delivered".into())),
        Some(message) => Err(JobError::Retry { class: "webhook", message, after: None }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_of_timestamp_and_body() {
        // printf '1700000000.{}' | openssl dgst -sha256 -hmac key
        assert_eq!(
            signature(&Secret::from("key"), 1_700_000_000, b"{}"),
            "sha256=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
    }
}
