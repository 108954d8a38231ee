//! `/api/v1`: the endpoints, described by poem-openapi. One module per area; each handler
//! checks, reads or enqueues, and answers — the work happens in the workers.

mod accounts;
mod connect;
mod events_api;
mod jobs_api;
mod limits_api;

pub use connect::state_hash;

use jobs::{AccountId, Platform, Timestamp};
use poem_openapi::{ApiResponse, Object, OpenApiService, Tags, payload::Json, registry::{MetaResponses, Registry}};

use crate::{ApiState, error::ApiError};

#[derive(Tags)]
enum Tag {
    /// Connecting Instagram and TikTok accounts (OAuth).
    Connect,
    /// The caller's connected accounts, their data, and sync requests.
    Accounts,
    /// Job status, notifications, and the ops triggers.
    Jobs,
    /// Rate limits offered to sibling services.
    Limits,
    /// What Instagram and TikTok send on their own (revocations); called by the platforms.
    Events,
}

/// The `/api/v1` service; its spec and docs page come from it too.
pub fn service(
    state: &ApiState,
) -> OpenApiService<(connect::ConnectApi, accounts::AccountsApi, jobs_api::JobsApi, limits_api::LimitsApi, events_api::EventsApi), ()> {
    let api = (
        connect::ConnectApi(state.clone()),
        accounts::AccountsApi(state.clone()),
        jobs_api::JobsApi(state.clone()),
        limits_api::LimitsApi(state.clone()),
        events_api::EventsApi(state.clone()),
    );
    OpenApiService::new(api, "socialsync", env!("CARGO_PKG_VERSION"))
        .description("Keeps a creator platform's Instagram and TikTok connections alive and their data fresh. Every error is `{\"error\":{\"code\",\"message\"}}` with a stable code.")
        .server("/api/v1")
}

/// The error body, for the spec.
#[derive(Object)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Object)]
struct ErrorDetail {
    /// Stable: e.g. `INVALID_REQUEST`, `UNAUTHORIZED`, `NOT_FOUND`, `OAUTH_STATE_INVALID`,
    /// `ACCOUNT_NOT_ACTIVE`, `RATE_LIMIT_EXCEEDED`, `PAYLOAD_TOO_LARGE`, `DATABASE_UNAVAILABLE`,
    /// `EVENT_MALFORMED`, `EVENT_SIGNATURE_INVALID`, `EVENT_STALE`.
    code: String,
    message: String,
    /// With `RATE_LIMIT_EXCEEDED`.
    retry_after_seconds: Option<u64>,
}

/// The error responses every endpoint may give, for the spec.
#[derive(ApiResponse)]
#[allow(dead_code)]
enum ErrorResponses {
    /// Malformed input: bad JSON, an unknown field, an unknown platform, an invalid state.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing or invalid credentials.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// Not found, or not the caller's.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The request conflicts with the resource's state.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The body is larger than allowed.
    #[oai(status = 413)]
    TooLarge(Json<ErrorBody>),
    /// Rate limited; see `Retry-After` and the `RateLimit-*` headers.
    #[oai(status = 429)]
    TooMany(Json<ErrorBody>),
    /// The database is unavailable; retry.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        ErrorResponses::meta()
    }

    fn register(registry: &mut Registry) {
        ErrorResponses::register(registry);
    }
}

type Result<T> = std::result::Result<T, ApiError>;

/// An instant as the API shows it: RFC 3339, UTC, milliseconds.
fn iso(t: Timestamp) -> String {
    t.to_string()
}

fn platform(name: &str) -> Result<Platform> {
    name.parse().map_err(|_| ApiError::bad_request("UNKNOWN_PLATFORM", format!("unknown platform {name:?}: use instagram or tiktok")))
}

/// The caller's account `id`, or 404 (also when it is someone else's: no existence leak).
async fn own_account(state: &ApiState, user: &str, id: i64) -> Result<jobs::store::Account> {
    match state.store.account(AccountId(id)).await? {
        Some(a) if a.user_id == user => Ok(a),
        _ => Err(ApiError::not_found("account")),
    }
}

/// Counts `subject` against the named per-user policy; a 429 when over.
async fn limit(state: &ApiState, policy: &str, subject: &str) -> Result<()> {
    let Some(p) = state.config.policies.get(policy) else { return Ok(()) };
    let d = crate::limits::hit(&state.store, policy, p, &format!("user:{subject}"), Timestamp::now()).await?;
    if d.allowed { Ok(()) } else { Err(d.error()) }
}
