//! `notifications`: the outbox. A status change that needs the user writes its row in the same
//! transaction; the `notify` job delivers it and the API lists it.

use super::{Result, Store};
use crate::{domain::AccountId, time::Timestamp};

#[derive(Clone, Debug)]
pub struct NewNotification {
    pub user_id: String,
    pub account_id: Option<AccountId>,
    /// What happened, e.g. `reauth_required`. Stable: the frontend branches on it.
    pub kind: String,
    /// JSON for the frontend; never holds a secret.
    pub payload: serde_json::Value,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Notification {
    pub id: i64,
    pub user_id: String,
    pub account_id: Option<AccountId>,
    pub kind: String,
    /// JSON text, as written from [`NewNotification::payload`].
    pub payload: String,
    pub created_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
    pub attempts: i32,
    pub last_error: Option<String>,
}

impl Notification {
    pub fn payload_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.payload).unwrap_or(serde_json::Value::Null)
    }
}

pub(super) const INSERT_NOTIFICATION: &str = "
    INSERT INTO notifications (user_id, account_id, kind, payload, created_at)
    VALUES ($1, $2, $3, $4, $5) RETURNING id";

/// Inserts a notification through any executor (a pool or an open transaction); yields its id.
macro_rules! insert_notification {
    ($ex:expr, $note:expr, $now:expr) => {
        sqlx::query_scalar::<_, i64>($crate::store::outbox::INSERT_NOTIFICATION)
            .bind(&$note.user_id)
            .bind($note.account_id)
            .bind(&$note.kind)
            .bind($note.payload.to_string())
            .bind($now)
            .fetch_one($ex)
            .await?
    };
}

impl Store {
    pub async fn add_notification(&self, note: &NewNotification, now: Timestamp) -> Result<i64> {
        Ok(on_pool!(self, p => insert_notification!(p, note, now)))
    }

    pub async fn notification(&self, id: i64) -> Result<Option<Notification>> {
        const SQL: &str = "SELECT * FROM notifications WHERE id = $1";
        Ok(on_pool!(self, p => sqlx::query_as(SQL).bind(id).fetch_optional(p).await?))
    }

    /// The user's notifications, newest first.
    pub async fn notifications_of_user(&self, user_id: &str, limit: u32) -> Result<Vec<Notification>> {
        const SQL: &str = "SELECT * FROM notifications WHERE user_id = $1 ORDER BY id DESC LIMIT $2";
        Ok(on_pool!(self, p => sqlx::query_as(SQL).bind(user_id).bind(i64::from(limit)).fetch_all(p).await?))
    }

    /// Undelivered notifications, oldest first (what a restarted notifier re-enqueues).
    pub async fn undelivered_notifications(&self, limit: u32) -> Result<Vec<Notification>> {
        const SQL: &str = "SELECT * FROM notifications WHERE delivered_at IS NULL ORDER BY id LIMIT $1";
        Ok(on_pool!(self, p => sqlx::query_as(SQL).bind(i64::from(limit)).fetch_all(p).await?))
    }

    /// Counts one delivery attempt and its error; `error = None` marks it delivered.
    /// Delivering an already delivered notification keeps the first delivery time.
    pub async fn record_delivery(&self, id: i64, error: Option<&str>, now: Timestamp) -> Result<()> {
        const SQL: &str = "
            UPDATE notifications SET attempts = attempts + 1, last_error = $2,
                delivered_at = CASE WHEN $2 IS NULL THEN COALESCE(delivered_at, $3) ELSE delivered_at END
            WHERE id = $1";
        on_pool!(self, p => sqlx::query(SQL).bind(id).bind(error).bind(now).execute(p).await?.rows_affected());
        Ok(())
    }
}
