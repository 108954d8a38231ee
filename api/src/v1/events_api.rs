//! What the platforms send on their own: Meta's deauthorize callback and TikTok's webhook.
//! Each request is verified (signature, algorithm, timestamp) before anything is written;
//! a verified event is stored in the inbox and answered at once, and an `event` job applies it.

use jobs::{events::{self, EventError, PlatformEvent}, store::{Account, StoredEvent}};
use poem::http::StatusCode;
use poem_openapi::{ApiResponse, Object, OpenApi, param::{Header, Path}, payload::{Binary, Form, Json}};
use serde::Deserialize;

use super::{Result, Tag};
use crate::{ApiState, auth::Service, error::ApiError};

pub struct EventsApi(pub ApiState);

/// Meta's callback body (`application/x-www-form-urlencoded`).
#[derive(Object, Deserialize)]
struct SignedRequestForm {
    /// `<signature>.<payload>`, both base64url: HMAC-SHA256 of the payload with the app secret.
    signed_request: String,
}

#[derive(Object)]
struct Received {
    /// False when the same event had been received before.
    created: bool,
}

#[derive(ApiResponse)]
enum EventResponse {
    /// Verified and stored; it is applied in the background.
    #[oai(status = 200)]
    Ok(Json<Received>),
}

/// What Meta shows the user about their deletion request.
#[derive(Object)]
pub(super) struct DeletionStarted {
    /// A public page showing the deletion's state (received, in progress, done), nothing else.
    url: String,
    confirmation_code: String,
}

#[derive(Object)]
struct UserErasure {
    /// One deletion per account of the user (none when the user has no account).
    deletions: Vec<DeletionStarted>,
}

#[derive(ApiResponse)]
enum DeletionResponse {
    /// Verified and stored; the account is erased in the background.
    #[oai(status = 200)]
    Ok(Json<DeletionStarted>),
}

impl From<EventError> for ApiError {
    fn from(e: EventError) -> Self {
        let status = match e {
            EventError::Malformed(_) => StatusCode::BAD_REQUEST,
            EventError::BadSignature | EventError::Stale => StatusCode::UNAUTHORIZED,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

#[OpenApi(tag = "Tag::Events")]
impl EventsApi {
    /// Meta's deauthorize callback (a user removed the app)
    ///
    /// Called by Meta, not by users. `signed_request` must verify with the Instagram app
    /// secret and name `HMAC-SHA256`; then the account is marked for reconnection, its tokens
    /// erased and its user notified.
    #[oai(path = "/platforms/instagram/deauthorize", method = "post", operation_id = "instagram_deauthorize")]
    async fn instagram_deauthorize(&self, form: Form<SignedRequestForm>) -> Result<EventResponse> {
        let secret = self.0.config.jobs.clients.instagram.app_secret();
        let event = events::instagram_deauthorize(secret, &form.0.signed_request).map_err(|e| refused("instagram", e))?;
        self.accept(event).await
    }

    /// Meta's data deletion callback (a user asked for their data to be deleted)
    ///
    /// Called by Meta, not by users; verified as the deauthorize callback. The account's tokens,
    /// snapshots, posts and personal fields are erased by a job; the answer's `url` shows its
    /// progress by `confirmation_code`. A redelivery answers the same code.
    #[oai(path = "/platforms/instagram/data-deletion", method = "post", operation_id = "instagram_data_deletion")]
    async fn instagram_data_deletion(&self, form: Form<SignedRequestForm>) -> Result<DeletionResponse> {
        let secret = self.0.config.jobs.clients.instagram.app_secret();
        let event = events::instagram_data_deletion(secret, &form.0.signed_request).map_err(|e| refused("instagram", e))?;
        Ok(DeletionResponse::Ok(Json(deletion(&self.0, event).await?)))
    }

    /// Erase every account of a user (the platform's own account deletion)
    ///
    /// For sibling services, with `X-Service-Token`: each of the user's accounts is erased as
    /// a data deletion is, each with its status page.
    #[oai(path = "/users/:user_id/erase", method = "post", operation_id = "erase_user")]
    async fn erase_user(&self, _service: Service, user_id: Path<String>) -> Result<Json<UserErasure>> {
        let mut deletions = Vec::new();
        for account in self.0.store.accounts_of_user(&user_id.0).await? {
            deletions.push(deletion(&self.0, erase_request(&account, "the platform erased the user", self.0.config.jobs.now())).await?);
        }
        tracing::info!(target: "events", accounts = deletions.len(), "user erasure requested");
        Ok(Json(UserErasure { deletions }))
    }

    /// TikTok's webhook
    ///
    /// Called by TikTok, not by users, with a JSON body (`application/json`, read as raw bytes
    /// for its signature). `TikTok-Signature: t=<unix s>,s=<hex HMAC-SHA256 of "t.body">` must
    /// verify with the client secret, `t` within `WEBHOOK_TOLERANCE_SECS`. `authorization.removed`
    /// marks the account for reconnection; other events are acknowledged and ignored.
    #[oai(path = "/platforms/tiktok/webhook", method = "post", operation_id = "tiktok_webhook")]
    async fn tiktok_webhook(&self, #[oai(name = "TikTok-Signature")] signature: Header<Option<String>>, body: Binary<Vec<u8>>) -> Result<EventResponse> {
        let cfg = &self.0.config;
        let secret = cfg.jobs.clients.tiktok.client_secret();
        let event = events::tiktok_webhook(secret, signature.0.as_deref(), &body.0, cfg.jobs.now(), cfg.webhook_tolerance_secs)
            .map_err(|e| refused("tiktok", e))?;
        self.accept(event).await
    }
}

impl EventsApi {
    async fn accept(&self, event: PlatformEvent) -> Result<EventResponse> {
        let (_, created) = store(&self.0, event, None).await?;
        Ok(EventResponse::Ok(Json(Received { created })))
    }
}

/// Stores the event and queues its job (an event seen before is answered from its row, and its
/// job, deduplicated, not queued twice).
async fn store(state: &ApiState, event: PlatformEvent, confirmation_code: Option<&str>) -> Result<(StoredEvent, bool)> {
    let cx = &state.config.jobs;
    let (stored, created) = state.store.record_platform_event(&event, confirmation_code, cx.now()).await?;
    if created {
        cx.enqueue(events::job(stored.id, cx.now())).await?;
    }
    tracing::info!(target: "events", platform = %event.platform, kind = %event.kind, event_id = stored.id, created, "platform event received");
    Ok((stored, created))
}

/// Stores a deletion and answers its status page (the same one for a request repeated).
pub(super) async fn deletion(state: &ApiState, event: PlatformEvent) -> Result<DeletionStarted> {
    let code: String = jobs::vault::random_bytes::<16>().iter().map(|b| format!("{b:02x}")).collect();
    let (stored, _) = store(state, event, Some(&code)).await?;
    let code = stored.confirmation_code.unwrap_or(code);
    Ok(DeletionStarted { url: format!("{}/deletion/{code}", state.config.public_url), confirmation_code: code })
}

/// An erasure asked for here rather than by the platform: the same `deleted` event and job,
/// one per account however often it is asked.
pub(super) fn erase_request(account: &Account, reason: &str, now: jobs::Timestamp) -> PlatformEvent {
    PlatformEvent {
        platform: account.platform,
        kind: events::DELETED.into(),
        platform_user_id: account.platform_user_id.clone(),
        reason: Some(reason.into()),
        event_key: format!("erase:{}", account.id),
        issued_at: now,
    }
}

fn refused(platform: &str, e: EventError) -> ApiError {
    tracing::warn!(target: "events", %platform, error = %e, "platform event refused");
    e.into()
}
