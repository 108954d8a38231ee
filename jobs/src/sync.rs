//! `sync`: reads one account's profile and recent posts, at the platform's pace.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{
    clients::PlatformError,
    domain::{AccountId, AccountStatus},
    job::{JobContext, JobError, Outcome},
    pacing::Slot,
    refresh,
    store::{NewJob, Snapshot},
    time::Timestamp,
};

/// The queue name. Stored in every queued job: never rename.
pub const KIND: &str = "sync";
pub const MAX_ATTEMPTS: i32 = 5;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncReason {
    #[default]
    Manual,
    Connect,
    Nightly,
}

/// Stored in the queue; outlives deploys. Add fields only with `#[serde(default)]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncAccount {
    pub account_id: AccountId,
    #[serde(default)]
    pub reason: SyncReason,
}

/// The job syncing `account`, at most one waiting per account.
/// The dedup key of an account's jobs on this queue: one waits at a time.
pub fn dedup_key(account: AccountId) -> String {
    format!("{KIND}:{account}")
}

pub fn job(account: AccountId, reason: SyncReason, run_at: Timestamp) -> NewJob {
    NewJob {
        queue: KIND,
        payload: serde_json::to_value(SyncAccount { account_id: account, reason }).expect("serializes"),
        run_at,
        max_attempts: MAX_ATTEMPTS,
        dedup_key: Some(dedup_key(account)),
    }
}

pub async fn run(args: SyncAccount, cx: &JobContext) -> Result<Outcome, JobError> {
    let id = args.account_id;
    let Some(mut account) = cx.store.account(id).await? else { return Ok(Outcome::Skipped("account is gone".into())) };
    if account.status != AccountStatus::Active {
        return Ok(Outcome::Skipped(format!("account is {}", account.status)));
    }
    let defer = |until: Timestamp| JobError::Defer { until, payload: serde_json::to_value(&args).expect("serializes") };

    // A token about to expire is refreshed first, through the same single-flight path.
    let now = cx.now();
    if account.access_expires_at.is_none_or(|e| e < now.plus(cx.settings.sync_token_margin)) {
        match refresh::refresh_account(cx, id, Some(now)).await {
            Ok(_) => {}
            Err(JobError::Defer { until, .. }) => return Err(defer(until)),
            Err(e) => return Err(e),
        }
        account = match cx.store.account(id).await? {
            Some(a) if a.status == AccountStatus::Active => a,
            _ => return Ok(Outcome::Skipped("account is no longer active".into())),
        };
    }

    // Pacing: start in the platform's next fleet-wide slot, or come back nearer to it.
    let (access, _) = refresh::open_tokens(cx, &account).await?;
    let spacing = cx.settings.spacing(account.platform);
    // Connect before the slot, not in it.
    cx.clients.warm(account.platform).await;
    let (margin, max_wait) = (cx.settings.pacing_margin, cx.settings.max_pacing_wait);
    let waited = match cx.local_gates.start(&cx.store, account.platform, spacing, margin, max_wait).await? {
        Slot::Now(waited) => waited,
        Slot::Later(wait) => {
            // Come back a little before the slot (fetching a due job takes up to a poll),
            // instead of holding a worker.
            let early = (cx.settings.max_pacing_wait / 2).min(Duration::from_secs(1));
            return Err(defer(cx.now().plus(wait).minus(early)));
        }
    };
    // Paused while it waited for the slot (the queue, or its platform's syncs): not started.
    // Put back due now, it is claimed again once resumed (nothing claims it meanwhile).
    if let Some(p) = cx.paused.holding(KIND, Some(account.platform)) {
        tracing::info!(target: "data_sync", account_id = %id, scope = %p.scope, "not started: paused {}", p.describe());
        return Err(defer(cx.now()));
    }
    metrics::histogram!("socialsync_pacing_wait_seconds", "platform" => account.platform.as_str()).record(waited.as_secs_f64());
    tracing::debug!(target: "data_sync", account_id = %id, pacing_wait_ms = waited.as_millis() as u64, "pacing gate taken");

    let started = Instant::now();
    let client = cx.clients.get(account.platform);
    let read = async {
        let profile = client.profile(&access, &account.scopes).await?;
        let posts = client.posts(&access, &account.scopes, cx.settings.sync_post_cap).await?;
        Ok::<_, PlatformError>((profile, posts))
    };
    let read = read.await;
    if !matches!(read, Err(PlatformError::Transient(_))) {
        cx.clients.used(account.platform);
    }
    match read {
        Ok((profile, posts)) => {
            let now = cx.now();
            let snap = Snapshot {
                taken_at: now,
                followers_count: profile.followers,
                following_count: profile.following,
                media_count: profile.media_count,
                likes_count: profile.likes,
            };
            let names = (profile.username.as_str(), profile.display_name.as_deref());
            cx.store.save_sync(id, Some(names), &snap, &posts, now).await?;
            let took = started.elapsed();
            metrics::histogram!("socialsync_sync_duration_seconds", "platform" => account.platform.as_str()).record(took.as_secs_f64());
            tracing::info!(target: "data_sync", account_id = %id, platform = %account.platform, posts = posts.len(), duration_ms = took.as_millis() as u64, "account synced");
            Ok(Outcome::Done(format!("{} posts in {} ms", posts.len(), took.as_millis())))
        }
        // An access token the platform calls invalid may simply have expired early: refresh
        // once; only a refused refresh marks the account for reconnection.
        Err(PlatformError::Permanent { code, .. }) => match refresh::refresh_account(cx, id, Some(cx.now())).await {
            Ok(Outcome::Done(_)) => Err(JobError::Retry { class: "token_renewed", message: format!("{code}; token renewed, syncing again"), after: Some(Duration::from_secs(1)) }),
            Ok(Outcome::Skipped(why)) => Err(JobError::GiveUp { class: "permanent", message: format!("{code}; {why}") }),
            // A deferred refresh carries its own payload: this job comes back as a sync.
            Err(JobError::Defer { until, .. }) => Err(defer(until)),
            Err(e) => Err(e),
        },
        Err(e) => {
            if let PlatformError::Transient(_) = e {
                cx.store.record_sync_error(id, "transient", cx.now()).await?;
            }
            Err(refresh::handle_platform_error(cx, &account, e, "data_sync").await?)
        }
    }
}
