//! The caller's accounts: list, stats, sync on demand, disconnect. Another user's account is a
//! 404, the same as one that does not exist. No token ever leaves: views are built field by
//! field from what is safe to show.

use jobs::{AccountStatus, store::{Account, Post, Snapshot}, sync::{self, SyncReason}};
use poem::http::StatusCode;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, param::{Path, Query}, payload::Json};

use super::{Result, Tag, iso, own_account};
use crate::{ApiState, auth::User, error::ApiError};

pub struct AccountsApi(pub ApiState);

/// A connected account, without its tokens.
#[derive(Object)]
struct AccountView {
    id: i64,
    /// `instagram` or `tiktok`.
    platform: String,
    username: String,
    display_name: Option<String>,
    /// `active`, `reauth_required` (the platform refused the tokens: the user must connect
    /// again), `revoked` (the user removed the app at the platform; connecting again restores
    /// it) or `disconnected`.
    status: String,
    /// When the account took its current status (RFC 3339).
    status_changed_at: String,
    /// Why it left `active`, when the platform said (e.g. "the user disconnected the app in
    /// TikTok" for a `revoked` account).
    status_reason: Option<String>,
    /// When the access token expires (RFC 3339).
    token_expires_at: Option<String>,
    /// When the next token refresh is planned.
    next_refresh_at: Option<String>,
    last_synced_at: Option<String>,
    /// The class of the last failed refresh or sync (e.g. `transient`, `revoked`), if any.
    last_error: Option<String>,
    connected_at: String,
}

impl From<&Account> for AccountView {
    fn from(a: &Account) -> Self {
        AccountView {
            id: a.id.0,
            platform: a.platform.as_str().into(),
            username: a.username.clone(),
            display_name: a.display_name.clone(),
            status: a.status.to_string(),
            status_changed_at: iso(a.status_changed_at),
            status_reason: a.status_reason.clone(),
            token_expires_at: a.access_expires_at.map(iso),
            next_refresh_at: a.next_refresh_at.map(iso),
            last_synced_at: a.last_synced_at.map(iso),
            last_error: a.last_sync_error.clone().or_else(|| a.last_refresh_error.clone()),
            connected_at: iso(a.created_at),
        }
    }
}

/// An account status to list.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
enum StatusParam {
    Active,
    ReauthRequired,
    Revoked,
    Disconnected,
}

impl StatusParam {
    fn of(self) -> AccountStatus {
        match self {
            StatusParam::Active => AccountStatus::Active,
            StatusParam::ReauthRequired => AccountStatus::ReauthRequired,
            StatusParam::Revoked => AccountStatus::Revoked,
            StatusParam::Disconnected => AccountStatus::Disconnected,
        }
    }
}

#[derive(Object)]
struct SyncQueued {
    /// Poll it at `GET /jobs/{job_id}`.
    job_id: String,
    /// False when a sync of this account was already waiting: `job_id` is that one.
    created: bool,
}

#[derive(ApiResponse)]
enum SyncResponse {
    /// The sync is queued (or was already).
    #[oai(status = 202)]
    Accepted(Json<SyncQueued>),
}

#[derive(ApiResponse)]
enum Disconnected {
    /// Disconnected (also when it already was).
    #[oai(status = 204)]
    NoContent,
    /// Disconnected, and its erasure queued: see the status page.
    #[oai(status = 202)]
    Erasing(Json<super::events_api::DeletionStarted>),
}

#[derive(Object)]
struct SnapshotView {
    taken_at: String,
    followers_count: Option<i64>,
    following_count: Option<i64>,
    media_count: Option<i64>,
    likes_count: Option<i64>,
}

impl From<&Snapshot> for SnapshotView {
    fn from(s: &Snapshot) -> Self {
        SnapshotView {
            taken_at: iso(s.taken_at),
            followers_count: s.followers_count,
            following_count: s.following_count,
            media_count: s.media_count,
            likes_count: s.likes_count,
        }
    }
}

#[derive(Object)]
struct PostView {
    id: String,
    caption: Option<String>,
    media_type: Option<String>,
    permalink: Option<String>,
    published_at: Option<String>,
    like_count: Option<i64>,
    comment_count: Option<i64>,
    view_count: Option<i64>,
    share_count: Option<i64>,
}

impl From<&Post> for PostView {
    fn from(p: &Post) -> Self {
        PostView {
            id: p.platform_post_id.clone(),
            caption: p.caption.clone(),
            media_type: p.media_type.clone(),
            permalink: p.permalink.clone(),
            published_at: p.published_at.map(iso),
            like_count: p.like_count,
            comment_count: p.comment_count,
            view_count: p.view_count,
            share_count: p.share_count,
        }
    }
}

#[derive(Object)]
struct Stats {
    account_id: i64,
    /// The newest snapshot, if the account was ever synced.
    latest: Option<SnapshotView>,
    /// Snapshots, newest first.
    history: Vec<SnapshotView>,
    posts_count: i64,
    /// The most recently published posts.
    recent_posts: Vec<PostView>,
}

#[OpenApi(tag = "Tag::Accounts")]
impl AccountsApi {
    /// The caller's accounts
    ///
    /// By default the ones the user still sees (`active`, `reauth_required` and `revoked`);
    /// `status` picks others, e.g. `?status=disconnected` or `?status=active&status=revoked`.
    #[oai(path = "/social-media/accounts", method = "get", operation_id = "list_accounts")]
    async fn list(
        &self,
        user: User,
        /// The statuses to list (repeat the parameter for several).
        status: Query<Vec<StatusParam>>,
    ) -> Result<Json<Vec<AccountView>>> {
        let wanted: Vec<AccountStatus> = match status.0.as_slice() {
            [] => vec![AccountStatus::Active, AccountStatus::ReauthRequired, AccountStatus::Revoked],
            some => some.iter().map(|s| s.of()).collect(),
        };
        let accounts = self.0.store.accounts_of_user(&user.0).await?;
        Ok(Json(accounts.iter().filter(|a| wanted.contains(&a.status)).map(AccountView::from).collect()))
    }

    /// Sync an account now
    ///
    /// Queues a sync (it starts in the platform's next pacing slot). When one is already
    /// waiting, answers that job instead of queueing another.
    #[oai(path = "/social-media/accounts/:id/sync", method = "post", operation_id = "sync_account")]
    async fn sync(&self, user: User, id: Path<i64>) -> Result<SyncResponse> {
        let account = own_account(&self.0, &user.0, id.0).await?;
        if account.status != AccountStatus::Active {
            return Err(ApiError::new(StatusCode::CONFLICT, "ACCOUNT_NOT_ACTIVE", format!("the account is {}; connect it again first", account.status)));
        }
        super::limit(&self.0, "sync", &user.0).await?;
        let cx = &self.0.config.jobs;
        let job = cx.enqueue(sync::job(account.id, SyncReason::Manual, cx.now())).await?;
        tracing::info!(target: "data_sync", account_id = %account.id, job_id = %job.id, created = job.created, "sync requested");
        Ok(SyncResponse::Accepted(Json(SyncQueued { job_id: job.id, created: job.created })))
    }

    /// Disconnect an account
    ///
    /// Revokes the grant at the platform where it has a revoke call, deletes the tokens, and
    /// keeps or drops the account's history as configured (`KEEP_HISTORY_ON_DISCONNECT`). With
    /// `erase=true` the account is also erased (snapshots, posts, personal fields), as a
    /// platform's data deletion is: 202 with its status page.
    #[oai(path = "/social-media/accounts/:id", method = "delete", operation_id = "disconnect_account")]
    async fn disconnect(
        &self,
        user: User,
        id: Path<i64>,
        /// Also erase everything socialsync holds of the account.
        #[oai(default)]
        erase: Query<bool>,
    ) -> Result<Disconnected> {
        let account = own_account(&self.0, &user.0, id.0).await?;
        let cx = &self.0.config.jobs;
        jobs::connect::disconnect(cx, &account, self.0.config.keep_history_on_disconnect).await?;
        if erase.0 {
            let request = super::events_api::erase_request(&account, "the user asked to erase it", cx.now());
            return Ok(Disconnected::Erasing(Json(super::events_api::deletion(&self.0, request).await?)));
        }
        Ok(Disconnected::NoContent)
    }

    /// An account's latest numbers, their history, and recent posts
    #[oai(path = "/social-media/accounts/:id/stats", method = "get", operation_id = "account_stats")]
    async fn stats(
        &self,
        user: User,
        id: Path<i64>,
        /// How many snapshots of history (newest first).
        #[oai(default = "default_history", validator(minimum(value = "1"), maximum(value = "365")))]
        history: Query<u32>,
    ) -> Result<Json<Stats>> {
        let account = own_account(&self.0, &user.0, id.0).await?;
        let store = &self.0.store;
        let snapshots = store.snapshots(account.id, history.0).await?;
        let posts = store.posts(account.id, 10).await?;
        Ok(Json(Stats {
            account_id: account.id.0,
            latest: snapshots.first().map(SnapshotView::from),
            history: snapshots.iter().map(SnapshotView::from).collect(),
            posts_count: store.post_count(account.id).await?,
            recent_posts: posts.iter().map(PostView::from).collect(),
        }))
    }
}

fn default_history() -> u32 {
    30
}
