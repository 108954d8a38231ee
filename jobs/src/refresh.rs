//! `refresh`: keeps one account's token alive. Single flight per account, fleet-wide: the
//! account's lease (a row lock with an expiry, never a transaction held across HTTP) guards
//! the platform call, and token writes are fenced by it, so a rotating TikTok refresh token is
//! never spent twice.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{
    clients::PlatformError,
    domain::{AccountId, AccountStatus, Platform},
    job::{JobContext, JobError, Outcome},
    secret::Secret,
    store::{Account, NewJob, NewNotification, RefreshedTokens},
    time::Timestamp,
    vault::Aad,
};

/// The queue name. Stored in every queued job: never rename.
pub const KIND: &str = "refresh";
pub const MAX_ATTEMPTS: i32 = 8;
/// Instagram refuses to refresh a token younger than this.
pub const INSTAGRAM_MIN_AGE: Duration = Duration::from_secs(24 * 3600);

/// Stored in the queue; outlives deploys. Add fields only with `#[serde(default)]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshToken {
    pub account_id: AccountId,
    /// When this refresh was planned; a refresh stored after it makes the job a no-op.
    #[serde(default)]
    pub planned_at: Option<Timestamp>,
}

/// The job refreshing `account` at `run_at`, at most one waiting per account.
/// The dedup key of an account's jobs on this queue: one waits at a time.
pub fn dedup_key(account: AccountId) -> String {
    format!("{KIND}:{account}")
}

pub fn job(account: AccountId, run_at: Timestamp, planned_at: Timestamp) -> NewJob {
    NewJob {
        queue: KIND,
        payload: serde_json::to_value(RefreshToken { account_id: account, planned_at: Some(planned_at) }).expect("serializes"),
        run_at,
        max_attempts: MAX_ATTEMPTS,
        dedup_key: Some(dedup_key(account)),
    }
}

/// When to refresh a token issued at `issued` that expires at `expires`: `lead` before expiry
/// (at most half the lifetime before), and for Instagram not before it is 24 hours old.
pub fn plan_next(platform: Platform, issued: Timestamp, expires: Timestamp, lead: Duration) -> Timestamp {
    let lifetime = issued.until(expires);
    let next = expires.minus(lead.min(lifetime / 2));
    match platform {
        Platform::Instagram => next.max(issued.plus(INSTAGRAM_MIN_AGE + Duration::from_secs(60))),
        Platform::Tiktok => next,
    }
}

pub async fn run(args: RefreshToken, cx: &JobContext) -> Result<Outcome, JobError> {
    refresh_account(cx, args.account_id, args.planned_at).await
}

/// Refreshes `id` unless it was refreshed after `planned_at`. Used by `refresh` and by `sync`
/// when it finds a token about to expire.
pub async fn refresh_account(cx: &JobContext, id: AccountId, planned_at: Option<Timestamp>) -> Result<Outcome, JobError> {
    let Some(account) = cx.store.account(id).await? else { return Ok(Outcome::Skipped("account is gone".into())) };
    if let Some(skip) = needless(&account, planned_at) {
        return replan(cx, &account, skip).await;
    }
    let now = cx.now();
    // The lease is this call's own, not the process's: concurrent jobs in one process must
    // exclude each other as much as jobs on different machines do.
    let owner = format!("{}/{}", cx.worker, crate::vault::random_bytes::<8>().iter().map(|b| format!("{b:02x}")).collect::<String>());
    if !cx.store.take_lease(id, &owner, now, cx.settings.lease_ttl).await? {
        // Another worker is refreshing it right now; look again when it should be done.
        let payload = serde_json::to_value(RefreshToken { account_id: id, planned_at }).expect("serializes");
        return Err(JobError::Defer { until: now.plus(Duration::from_secs(5)), payload });
    }
    let result = refresh_leased(cx, id, planned_at, &owner).await;
    // Every path but success leaves the lease to be released here (success releases it in the
    // same write as the tokens).
    if !matches!(result, Ok(Outcome::Done(_))) {
        cx.store.release_lease(id, &owner).await?;
    }
    result
}

/// A skipped refresh makes sure the account's next one is queued: the refresh that made this
/// one needless may have found this job waiting and so queued nothing.
async fn replan(cx: &JobContext, a: &Account, skip: Outcome) -> Result<Outcome, JobError> {
    if let (AccountStatus::Active, Some(next)) = (a.status, a.next_refresh_at) {
        cx.enqueue(job(a.id, next, cx.now())).await?;
    }
    Ok(skip)
}

fn needless(a: &Account, planned_at: Option<Timestamp>) -> Option<Outcome> {
    if a.status != AccountStatus::Active {
        return Some(Outcome::Skipped(format!("account is {}", a.status)));
    }
    match (a.last_refreshed_at, planned_at) {
        (Some(done), Some(planned)) if done > planned => Some(Outcome::Skipped("refreshed since it was planned".into())),
        _ => None,
    }
}

async fn refresh_leased(cx: &JobContext, id: AccountId, planned_at: Option<Timestamp>, owner: &str) -> Result<Outcome, JobError> {
    // Re-read under the lease: the previous holder may have just stored new tokens.
    let Some(account) = cx.store.account(id).await? else { return Ok(Outcome::Skipped("account is gone".into())) };
    if let Some(skip) = needless(&account, planned_at) {
        return replan(cx, &account, skip).await;
    }
    let now = cx.now();
    if account.platform == Platform::Instagram {
        if let Some(issued) = account.token_issued_at.filter(|i| now < i.plus(INSTAGRAM_MIN_AGE)) {
            let until = issued.plus(INSTAGRAM_MIN_AGE + Duration::from_secs(60));
            let payload = serde_json::to_value(RefreshToken { account_id: id, planned_at }).expect("serializes");
            return Err(JobError::Defer { until, payload });
        }
    }
    let (access, refresh) = open_tokens(cx, &account).await?;
    let client = cx.clients.get(account.platform);
    match client.refresh(&access, refresh.as_ref()).await {
        Ok(grant) => {
            let aad = |field| Aad::account(account.platform, &account.platform_user_id, field);
            let expires = now.plus(grant.expires_in);
            let next = plan_next(account.platform, now, expires, cx.settings.refresh_lead(account.platform));
            let tokens = RefreshedTokens {
                access_token: cx.vault.seal(&aad("access_token"), &grant.access_token),
                refresh_token: grant.refresh_token.as_ref().map(|r| cx.vault.seal(&aad("refresh_token"), r)),
                access_expires_at: expires,
                refresh_expires_at: grant.refresh_expires_in.map(|d| now.plus(d)),
                next_refresh_at: Some(next),
            };
            if !cx.store.record_refresh(id, owner, &tokens, now).await? {
                // Our lease lapsed and someone else took over; their write stands.
                return Err(JobError::Retry { class: "lease_lost", message: "the account's lease lapsed during the refresh".into(), after: None });
            }
            cx.enqueue(job(id, next, now)).await?;
            tracing::info!(target: "token_refresh", account_id = %id, platform = %account.platform, next_refresh = %next, "token refreshed");
            metrics::counter!("socialsync_token_refreshes_total", "platform" => account.platform.as_str(), "outcome" => "ok").increment(1);
            Ok(Outcome::Done(format!("refreshed; next refresh at {next}")))
        }
        // Our record of the token's age and the platform's disagree (a token stored before
        // `token_issued_at` was kept, or clocks apart): wait a day, the platform's minimum age,
        // without spending an attempt or calling it a failure. The token has weeks left.
        Err(PlatformError::TooEarly(message)) => {
            tracing::info!(target: "token_refresh", account_id = %id, platform = %account.platform, error = %message, "the platform says the token is too young to refresh; trying again in a day");
            let payload = serde_json::to_value(RefreshToken { account_id: id, planned_at }).expect("serializes");
            Err(JobError::Defer { until: now.plus(INSTAGRAM_MIN_AGE), payload })
        }
        Err(e) => Err(handle_platform_error(cx, &account, e, "token_refresh").await?),
    }
}

/// Opens an account's tokens. Unreadable tokens (wrong key, or copied from another account)
/// cannot heal: the account needs reconnecting, which is said, not crashed on.
pub async fn open_tokens(cx: &JobContext, a: &Account) -> Result<(Secret, Option<Secret>), JobError> {
    let aad = |field| Aad::account(a.platform, &a.platform_user_id, field);
    let access = a.access_token.as_ref().map(|s| cx.vault.open(&aad("access_token"), s));
    let refresh = a.refresh_token.as_ref().map(|s| cx.vault.open(&aad("refresh_token"), s)).transpose();
    match (access, refresh) {
        (Some(Ok(access)), Ok(refresh)) => Ok((access, refresh)),
        (None, _) => Err(JobError::GiveUp { class: "no_token", message: "the account has no stored token".into() }),
        (Some(Err(e)), _) | (_, Err(e)) => {
            tracing::error!(account_id = %a.id, error = %e, "stored tokens do not decrypt; the account needs reconnecting");
            mark_reauth(cx, a, "token_unreadable").await?;
            Err(JobError::GiveUp { class: "token_unreadable", message: e.to_string() })
        }
    }
}

/// Turns a platform failure into the job's error, acting on it first: a permanent failure
/// marks the account for reconnection (and notifies the user); a throttle pushes the
/// platform's pacing gate back for the whole fleet. A transient one changes nothing.
pub async fn handle_platform_error(cx: &JobContext, a: &Account, e: PlatformError, target: &'static str) -> Result<JobError, JobError> {
    let now = cx.now();
    match &e {
        PlatformError::Permanent { code, .. } => {
            if target == "token_refresh" {
                metrics::counter!("socialsync_token_refreshes_total", "platform" => a.platform.as_str(), "outcome" => "permanent").increment(1);
            }
            tracing::warn!(target: "token_refresh", account_id = %a.id, platform = %a.platform, code = %code, "the platform refused the grant for good; the user must reconnect");
            mark_reauth(cx, a, code).await?;
        }
        PlatformError::RateLimited { retry_after, .. } => {
            let wait = retry_after.unwrap_or(Duration::from_secs(60));
            metrics::counter!("socialsync_platform_rate_limited_total", "platform" => a.platform.as_str()).increment(1);
            tracing::warn!(target: "rate_limit", account_id = %a.id, platform = %a.platform, wait_secs = wait.as_secs(), "the platform asked us to slow down");
            cx.store.push_back_pacing(a.platform.as_str(), now.plus(wait)).await?;
        }
        PlatformError::TooEarly(message) => {
            tracing::info!(target, account_id = %a.id, platform = %a.platform, error = %message, "too early for the platform; will retry");
        }
        PlatformError::Transient(message) => {
            tracing::info!(target, account_id = %a.id, platform = %a.platform, error = %message, "transient platform failure; will retry");
            if target == "token_refresh" {
                cx.store.record_refresh_error(a.id, "transient", now).await?;
            }
        }
    }
    Ok(e.into())
}

/// Marks the account `reauth_required` with a notification for its user (one transaction),
/// and queues the notification's delivery. Idempotent: an account already marked is left be.
pub async fn mark_reauth(cx: &JobContext, a: &Account, error_class: &str) -> Result<(), JobError> {
    let note = NewNotification {
        user_id: a.user_id.clone(),
        account_id: Some(a.id),
        kind: "reauth_required".into(),
        payload: serde_json::json!({
            "platform": a.platform,
            "account_id": a.id,
            "username": a.username,
            "reason": error_class,
        }),
    };
    let now = cx.now();
    if let Some(note_id) = cx.store.mark_reauth_required(a.id, error_class, &note, now).await? {
        cx.enqueue(crate::notify::job(note_id, now)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn instagram_refreshes_a_week_early_but_never_before_a_day() {
        let t = Timestamp::from_secs(1_800_000_000);
        assert_eq!(plan_next(Platform::Instagram, t, t.plus(DAY * 60), DAY * 7), t.plus(DAY * 53));
        let young = plan_next(Platform::Instagram, t, t.plus(DAY), DAY * 7);
        assert_eq!(young, t.plus(INSTAGRAM_MIN_AGE + Duration::from_secs(60)));
    }

    #[test]
    fn tiktok_lead_is_capped_at_half_the_lifetime() {
        let t = Timestamp::from_secs(1_800_000_000);
        let hour = Duration::from_secs(3600);
        assert_eq!(plan_next(Platform::Tiktok, t, t.plus(DAY), hour / 2), t.plus(DAY - hour / 2));
        assert_eq!(plan_next(Platform::Tiktok, t, t.plus(hour), DAY), t.plus(hour / 2));
    }

    #[test]
    fn payload_round_trips_and_old_payloads_still_read() {
        let a = RefreshToken { account_id: AccountId(7), planned_at: Some(Timestamp(5)) };
        assert_eq!(serde_json::from_value::<RefreshToken>(serde_json::to_value(&a).unwrap()).unwrap(), a);
        let old: RefreshToken = serde_json::from_str(r#"{"account_id":7}"#).unwrap();
        assert_eq!(old.planned_at, None);
    }
}
