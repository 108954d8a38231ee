//! OAuth connect: `connect` creates a state and answers the platform's authorization URL;
//! `callback` is where the platform sends the browser back. The callback trusts nothing but
//! the state: it must exist, be for this platform, be unexpired and unused, and it is consumed
//! in the same statement that stores the (sealed) code, so a replay finds it used.

use std::time::Duration;

use base64::Engine;
use jobs::{Aad, Secret, clients::tiktok, connect, store::NewOAuthState};
use poem_openapi::{ApiResponse, Object, OpenApi, param::{Path, Query}, payload::Json};
use sha2::{Digest, Sha256};

use super::{Result, Tag, iso, platform};
use crate::{ApiState, auth::User, error::ApiError};

/// How long a started connect may take (the user reading the consent page).
const STATE_TTL: Duration = Duration::from_secs(10 * 60);
/// Longer codes or states are not the platforms'; they are refused before anything is touched.
const MAX_CODE_LEN: usize = 2048;
const MAX_STATE_LEN: usize = 256;

/// Whether `code` could be a platform's authorization code. Instagram's are base64-like and
/// end in `#_`; TikTok's use letters, digits and `*!-_.`. Anything else (quotes, spaces, angle
/// brackets, control characters: injection attempts) is refused before it is stored or sent on.
fn plausible_code(code: &str) -> bool {
    code.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~*!#".contains(&b))
}

pub struct ConnectApi(pub ApiState);

/// Where to send the user's browser next.
#[derive(Object)]
struct ConnectStarted {
    /// The platform's consent page, carrying this connect's `state`.
    authorization_url: String,
    /// The connect must finish before this instant (RFC 3339).
    state_expires_at: String,
}

#[derive(ApiResponse)]
enum Redirect {
    /// Back to the frontend: `?connect=pending&platform=…&job_id=…`, or
    /// `?connect=error&platform=…&reason=…` when the user declined.
    #[oai(status = 303)]
    SeeOther(#[oai(header = "Location")] String),
}

/// The stored form of a state: its SHA-256, so a leaked table cannot be replayed.
pub fn state_hash(state: &str) -> String {
    Sha256::digest(state.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[OpenApi(tag = "Tag::Connect")]
impl ConnectApi {
    /// Start connecting an Instagram or TikTok account
    ///
    /// Answers the platform's consent page for the caller to open. After the user allows (or
    /// denies) access there, the platform sends the browser to `callback`.
    #[oai(path = "/social-media/:platform/connect", method = "post", operation_id = "start_connect")]
    async fn connect(&self, user: User, #[oai(name = "platform")] name: Path<String>) -> Result<Json<ConnectStarted>> {
        let platform = platform(&name.0)?;
        super::limit(&self.0, "connect", &user.0).await?;
        let cx = &self.0.config.jobs;
        let state = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(jobs::vault::random_bytes::<32>());
        let hash = state_hash(&state);
        let client = cx.clients.get(platform);
        let (verifier, challenge) = if client.uses_pkce() {
            let verifier = tiktok::pkce_verifier();
            let challenge = tiktok::pkce_challenge(&verifier);
            (Some(cx.vault.seal(&Aad::oauth_state(&hash, "pkce_verifier"), &verifier)), Some(challenge))
        } else {
            (None, None)
        };
        let now = cx.now();
        let expires_at = now.plus(STATE_TTL);
        let new = NewOAuthState { state_hash: hash, user_id: user.0.clone(), platform, pkce_verifier: verifier, expires_at };
        self.0.store.create_oauth_state(&new, now).await?;
        tracing::info!(user_id = %user.0, %platform, "connect started");
        Ok(Json(ConnectStarted { authorization_url: client.authorization_url(&state, challenge.as_deref()), state_expires_at: iso(expires_at) }))
    }

    /// The platform's redirect after consent (called by the user's browser)
    ///
    /// Needs no token: the `state` identifies the user. A valid state with a code queues the
    /// connect and redirects to the frontend with `connect=pending`; a valid state with an
    /// `error` (consent denied) redirects with `connect=error`. A missing, unknown, expired,
    /// replayed or other-platform state is a 400 `OAUTH_STATE_INVALID`: there is no trusted
    /// place to redirect to.
    #[oai(path = "/social-media/:platform/callback", method = "get", operation_id = "oauth_callback")]
    async fn callback(
        &self,
        #[oai(name = "platform")] name: Path<String>,
        code: Query<Option<String>>,
        state: Query<Option<String>>,
        /// Set by the platform when the user denied access (`access_denied`).
        error: Query<Option<String>>,
    ) -> Result<Redirect> {
        let platform = platform(&name.0)?;
        let invalid = || ApiError::bad_request("OAUTH_STATE_INVALID", "the OAuth state is missing, unknown, expired, already used, or for another platform");
        let state = state.0.filter(|s| !s.is_empty() && s.len() <= MAX_STATE_LEN).ok_or_else(invalid)?;
        let code = code.0.filter(|c| !c.is_empty());
        if code.as_ref().is_some_and(|c| c.len() > MAX_CODE_LEN) {
            return Err(ApiError::bad_request("INVALID_REQUEST", format!("code is longer than {MAX_CODE_LEN} characters")));
        }
        if code.as_deref().is_some_and(|c| !plausible_code(c)) {
            return Err(ApiError::bad_request("INVALID_REQUEST", "code has characters no platform puts in an authorization code"));
        }
        let cx = &self.0.config.jobs;
        let hash = state_hash(&state);
        let now = cx.now();
        let denied = error.0.as_deref().map(reason).or(code.is_none().then_some("missing_code"));
        let sealed = match (&code, denied) {
            (Some(code), None) => Some(cx.vault.seal(&Aad::oauth_state(&hash, "code"), &Secret::new(code.clone()))),
            _ => None,
        };
        let consumed = self.0.store.consume_oauth_state(&hash, platform, sealed.as_ref(), now).await?.ok_or_else(invalid)?;
        if let Some(reason) = denied {
            tracing::info!(user_id = %consumed.user_id, %platform, reason, "connect declined at the platform");
            return Ok(Redirect::SeeOther(self.frontend(&[("connect", "error"), ("platform", platform.as_str()), ("reason", reason)])));
        }
        let job = cx.enqueue(connect::job(&hash, now)).await?;
        tracing::info!(user_id = %consumed.user_id, %platform, job_id = %job.id, "connect queued");
        Ok(Redirect::SeeOther(self.frontend(&[("connect", "pending"), ("platform", platform.as_str()), ("job_id", &job.id)])))
    }
}

impl ConnectApi {
    fn frontend(&self, pairs: &[(&str, &str)]) -> String {
        let mut url = url::Url::parse(&self.0.config.frontend_url).expect("FRONTEND_URL is validated at start");
        url.query_pairs_mut().extend_pairs(pairs);
        url.to_string()
    }
}

/// The platform's error code, if it looks like one; anything else is just "denied" (it goes
/// into a URL the frontend shows).
fn reason(error: &str) -> &str {
    let plain = !error.is_empty() && error.len() <= 64 && error.chars().all(|c| c.is_ascii_lowercase() || c == '_');
    if plain { error } else { "denied" }
}
