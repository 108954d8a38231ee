//! `connect`: finishes an OAuth connect — the code the callback stored (sealed, never in the
//! job payload) becomes tokens, the account is stored, its refresh planned, its first sync
//! queued. Idempotent: a connect already done only re-queues what may be missing.

use serde::{Deserialize, Serialize};

use crate::{
    job::{JobContext, JobError, Outcome},
    refresh,
    store::{Account, NewAccount, NewJob, StoreError},
    sync::{self, SyncReason},
    time::Timestamp,
    vault::Aad,
};

/// The queue name. Stored in every queued job: never rename.
pub const KIND: &str = "connect";
pub const MAX_ATTEMPTS: i32 = 5;

/// Stored in the queue; outlives deploys. Add fields only with `#[serde(default)]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectAccount {
    /// The OAuth state's hash (the row holding the sealed code), not the state itself.
    pub state_hash: String,
}

pub fn job(state_hash: &str, now: Timestamp) -> NewJob {
    NewJob {
        queue: KIND,
        payload: serde_json::to_value(ConnectAccount { state_hash: state_hash.to_owned() }).expect("serializes"),
        run_at: now,
        max_attempts: MAX_ATTEMPTS,
        dedup_key: Some(format!("{KIND}:{state_hash}")),
    }
}

pub async fn run(args: ConnectAccount, cx: &JobContext) -> Result<Outcome, JobError> {
    let hash = &args.state_hash;
    let Some(state) = cx.store.oauth_state(hash).await? else {
        return Err(JobError::GiveUp { class: "unknown_state", message: "no such OAuth state".into() });
    };
    if let Some(id) = state.account_id {
        cx.enqueue(sync::job(id, SyncReason::Connect, cx.now())).await?;
        return Ok(Outcome::Skipped(format!("already connected as account {id}")));
    }
    let Some(sealed_code) = &state.code else {
        return Err(JobError::GiveUp { class: "no_code", message: "the callback stored no code".into() });
    };
    let open = |field, sealed| {
        cx.vault.open(&Aad::oauth_state(hash, field), sealed).map_err(|e| JobError::GiveUp { class: "token_unreadable", message: e.to_string() })
    };
    let code = open("code", sealed_code)?;
    let verifier = state.pkce_verifier.as_ref().map(|v| open("pkce_verifier", v)).transpose()?;

    let client = cx.clients.get(state.platform);
    let grant = client.exchange_code(&code, verifier.as_ref()).await?;
    // The profile is a courtesy here (the first sync reads it too); a failure must not lose
    // the spent code's tokens.
    let profile = client.profile(&grant.access_token, &grant.scopes).await.ok();

    let now = cx.now();
    let puid = &grant.platform_user_id;
    let aad = |field| Aad::account(state.platform, puid, field);
    let expires = now.plus(grant.expires_in);
    let next_refresh = refresh::plan_next(state.platform, now, expires, cx.settings.refresh_lead(state.platform));
    let account = cx
        .store
        .upsert_account(
            &NewAccount {
                user_id: state.user_id.clone(),
                platform: state.platform,
                platform_user_id: puid.clone(),
                username: profile.as_ref().map(|p| p.username.clone()).unwrap_or_default(),
                display_name: profile.as_ref().and_then(|p| p.display_name.clone()),
                scopes: grant.scopes.clone(),
                access_token: cx.vault.seal(&aad("access_token"), &grant.access_token),
                refresh_token: grant.refresh_token.as_ref().map(|r| cx.vault.seal(&aad("refresh_token"), r)),
                access_expires_at: expires,
                refresh_expires_at: grant.refresh_expires_in.map(|d| now.plus(d)),
                next_refresh_at: Some(next_refresh),
            },
            now,
        )
        .await?;
    cx.store.complete_oauth_state(hash, account.id).await?;
    cx.enqueue(refresh::job(account.id, next_refresh, now)).await?;
    cx.enqueue(sync::job(account.id, SyncReason::Connect, now)).await?;
    tracing::info!(account_id = %account.id, platform = %state.platform, "account connected");
    Ok(Outcome::Done(format!("connected account {}", account.id)))
}

/// Disconnects an account, as its user asked (the API) or ops did (the dashboard): revokes the
/// grant at the platform where it has a revoke call — best effort, a platform that is down
/// must not stop it — forgets the tokens, and drops the account's history unless
/// `keep_history`. Returns false if it was disconnected already.
pub async fn disconnect(cx: &JobContext, account: &Account, keep_history: bool) -> Result<bool, StoreError> {
    if let Some(sealed) = &account.access_token {
        let aad = Aad::account(account.platform, &account.platform_user_id, "access_token");
        match cx.vault.open(&aad, sealed) {
            Ok(token) => {
                if let Err(e) = cx.clients.get(account.platform).revoke(&token).await {
                    tracing::warn!(account_id = %account.id, error = %e, "revoking at the platform failed; disconnecting anyway");
                }
            }
            Err(e) => tracing::warn!(account_id = %account.id, error = %e, "stored token unreadable; disconnecting without revoking"),
        }
    }
    let done = cx.store.disconnect_account(account.id, cx.now()).await?;
    if !keep_history {
        cx.store.delete_account_history(account.id).await?;
    }
    tracing::info!(account_id = %account.id, platform = %account.platform, "account disconnected");
    Ok(done)
}
