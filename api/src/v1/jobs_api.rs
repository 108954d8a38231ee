//! A job's status and the caller's notifications (user JWT), and the ops triggers for the
//! nightly sweeps (`X-Cron-Secret`).

use jobs::{AccountId, refresh, store::JobRow, sweeps, sync::{self, SyncReason}};
use poem_openapi::{Object, OpenApi, param::{Path, Query}, payload::Json};

use super::{Result, Tag, iso};
use crate::{ApiState, auth::{Cron, User}, error::ApiError};

pub struct JobsApi(pub ApiState);

#[derive(Object)]
struct JobView {
    id: String,
    /// `connect`, `refresh`, `sync` or `notify`.
    queue: String,
    /// The queue's status: `Pending`, `Queued`, `Running`, `Done`, `Failed` or `Killed`.
    status: String,
    attempts: i32,
    max_attempts: i32,
    /// When it runs (or ran) (RFC 3339).
    run_at: String,
    /// The last attempt's error, if it failed.
    last_error: Option<String>,
}

#[derive(Object)]
struct NotificationView {
    id: i64,
    /// What happened, e.g. `reauth_required`.
    kind: String,
    account_id: Option<i64>,
    payload: serde_json::Value,
    created_at: String,
    /// When the webhook took it, if it has.
    delivered_at: Option<String>,
}

#[derive(Object)]
struct Triggered {
    /// Jobs newly queued (accounts with one already waiting are not counted twice).
    enqueued: u64,
    /// With `account_id`: the job standing for the request.
    job_id: Option<String>,
}

#[OpenApi(tag = "Tag::Jobs")]
impl JobsApi {
    /// One of the caller's jobs
    #[oai(path = "/jobs/:id", method = "get", operation_id = "get_job")]
    async fn job(&self, user: User, id: Path<String>) -> Result<Json<JobView>> {
        let job = match self.0.store.job_row(&id.0).await? {
            Some(job) if self.owner(&job).await?.as_deref() == Some(user.0.as_str()) => job,
            _ => return Err(ApiError::not_found("job")),
        };
        Ok(Json(JobView {
            last_error: job.last_error(),
            id: job.id,
            queue: job.queue,
            status: job.status,
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            run_at: iso(job.run_at),
        }))
    }

    /// The caller's notifications, newest first
    #[oai(path = "/notifications", method = "get", operation_id = "list_notifications")]
    async fn notifications(
        &self,
        user: User,
        #[oai(default = "default_limit", validator(minimum(value = "1"), maximum(value = "200")))] limit: Query<u32>,
    ) -> Result<Json<Vec<NotificationView>>> {
        let notes = self.0.store.notifications_of_user(&user.0, limit.0).await?;
        Ok(Json(
            notes
                .iter()
                .map(|n| NotificationView {
                    id: n.id,
                    kind: n.kind.clone(),
                    account_id: n.account_id.map(|a| a.0),
                    payload: n.payload_json(),
                    created_at: iso(n.created_at),
                    delivered_at: n.delivered_at.map(iso),
                })
                .collect(),
        ))
    }

    /// Run the token-refresh sweep now (ops)
    ///
    /// What the nightly 02:00 sweep does, or, with `account_id`, a refresh of that account.
    #[oai(path = "/jobs/token-refresh/run", method = "post", operation_id = "run_token_refresh")]
    async fn run_refresh(&self, _cron: Cron, account_id: Query<Option<i64>>) -> Result<Json<Triggered>> {
        let cx = &self.0.config.jobs;
        let now = cx.now();
        let result = match account_id.0 {
            Some(id) => {
                self.existing(id).await?;
                let job = cx.enqueue(refresh::job(AccountId(id), now, now)).await?;
                Triggered { enqueued: job.created as u64, job_id: Some(job.id) }
            }
            None => Triggered { enqueued: sweeps::refresh_sweep(cx, sweeps::CHUNK).await?, job_id: None },
        };
        tracing::info!(target: "token_refresh", enqueued = result.enqueued, account_id = ?account_id.0, "token refresh run by hand");
        Ok(Json(result))
    }

    /// Run the data-sync sweep now (ops)
    ///
    /// What the nightly 03:00 sweep does, or, with `account_id`, a sync of that account.
    #[oai(path = "/jobs/data-sync/run", method = "post", operation_id = "run_data_sync")]
    async fn run_sync(&self, _cron: Cron, account_id: Query<Option<i64>>) -> Result<Json<Triggered>> {
        let cx = &self.0.config.jobs;
        let result = match account_id.0 {
            Some(id) => {
                self.existing(id).await?;
                let job = cx.enqueue(sync::job(AccountId(id), SyncReason::Manual, cx.now())).await?;
                Triggered { enqueued: job.created as u64, job_id: Some(job.id) }
            }
            None => Triggered { enqueued: sweeps::sync_sweep(cx, sweeps::CHUNK).await?, job_id: None },
        };
        tracing::info!(target: "data_sync", enqueued = result.enqueued, account_id = ?account_id.0, "data sync run by hand");
        Ok(Json(result))
    }
}

impl JobsApi {
    /// The user a job belongs to, from what its arguments name.
    async fn owner(&self, job: &JobRow) -> Result<Option<String>> {
        let args = job.payload_json();
        let store = &self.0.store;
        if let Some(id) = args.get("account_id").and_then(|v| v.as_i64()) {
            return Ok(store.account(AccountId(id)).await?.map(|a| a.user_id));
        }
        if let Some(hash) = args.get("state_hash").and_then(|v| v.as_str()) {
            return Ok(store.oauth_state(hash).await?.map(|s| s.user_id));
        }
        if let Some(id) = args.get("notification_id").and_then(|v| v.as_i64()) {
            return Ok(store.notification(id).await?.map(|n| n.user_id));
        }
        Ok(None)
    }

    async fn existing(&self, id: i64) -> Result<()> {
        match self.0.store.account(AccountId(id)).await? {
            Some(_) => Ok(()),
            None => Err(ApiError::not_found("account")),
        }
    }
}

fn default_limit() -> u32 {
    50
}
