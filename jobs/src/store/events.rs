//! `platform_events`: the inbox of what the platforms told the app (see `crate::events`), and
//! what applying a revocation writes.

use sha2::Digest;

use super::{Account, NewNotification, Result, Store};
use crate::{domain::{AccountId, Platform}, events::PlatformEvent, time::Timestamp};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct StoredEvent {
    pub id: i64,
    pub platform: Platform,
    pub kind: String,
    pub platform_user_id: String,
    pub reason: Option<String>,
    /// The SHA-256 of the event's key (hex).
    pub event_key: String,
    pub issued_at: Timestamp,
    pub received_at: Timestamp,
    /// A data deletion's code: the key of its public status page.
    pub confirmation_code: Option<String>,
    pub started_at: Option<Timestamp>,
    pub processed_at: Option<Timestamp>,
}

impl StoredEvent {
    /// `received`, `in_progress` or `done`: all a deletion's status page shows.
    pub fn state(&self) -> &'static str {
        match (self.started_at, self.processed_at) {
            (_, Some(_)) => "done",
            (Some(_), None) => "in_progress",
            (None, None) => "received",
        }
    }
}

impl Store {
    /// Stores a verified event (with `confirmation_code`, for a deletion); a redelivery of one
    /// already stored is that row, code included. Returns the row and whether it is new.
    pub async fn record_platform_event(&self, e: &PlatformEvent, confirmation_code: Option<&str>, now: Timestamp) -> Result<(StoredEvent, bool)> {
        const INSERT: &str = "
            INSERT INTO platform_events (platform, kind, platform_user_id, reason, event_key, issued_at, received_at, confirmation_code)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (event_key) DO NOTHING RETURNING *";
        const FIND: &str = "SELECT * FROM platform_events WHERE event_key = $1";
        // Kept as a digest: the key names the platform's user, and an erasure must leave no name.
        let key: String = sha2::Sha256::digest(e.event_key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        let new: Option<StoredEvent> = on_pool!(self, p => sqlx::query_as(INSERT)
            .bind(e.platform).bind(&e.kind).bind(&e.platform_user_id).bind(&e.reason).bind(&key)
            .bind(e.issued_at).bind(now).bind(confirmation_code)
            .fetch_optional(p).await?);
        match new {
            Some(row) => Ok((row, true)),
            None => Ok((on_pool!(self, p => sqlx::query_as(FIND).bind(&key).fetch_one(p).await?), false)),
        }
    }

    /// The deletion a status page's code names.
    pub async fn platform_event_by_code(&self, code: &str) -> Result<Option<StoredEvent>> {
        const SQL: &str = "SELECT * FROM platform_events WHERE confirmation_code = $1";
        Ok(on_pool!(self, p => sqlx::query_as(SQL).bind(code).fetch_optional(p).await?))
    }

    pub async fn mark_event_started(&self, id: i64, now: Timestamp) -> Result<()> {
        const SQL: &str = "UPDATE platform_events SET started_at = $2 WHERE id = $1 AND started_at IS NULL";
        on_pool!(self, p => sqlx::query(SQL).bind(id).bind(now).execute(p).await?.rows_affected());
        Ok(())
    }

    pub async fn platform_event(&self, id: i64) -> Result<Option<StoredEvent>> {
        const SQL: &str = "SELECT * FROM platform_events WHERE id = $1";
        Ok(on_pool!(self, p => sqlx::query_as(SQL).bind(id).fetch_optional(p).await?))
    }

    pub async fn mark_event_processed(&self, id: i64, now: Timestamp) -> Result<()> {
        const SQL: &str = "UPDATE platform_events SET processed_at = $2 WHERE id = $1 AND processed_at IS NULL";
        on_pool!(self, p => sqlx::query(SQL).bind(id).bind(now).execute(p).await?.rows_affected());
        Ok(())
    }

    /// The account a platform's user id names (unique per platform).
    pub async fn account_by_platform_user(&self, platform: Platform, platform_user_id: &str) -> Result<Option<Account>> {
        const SQL: &str = "SELECT * FROM social_accounts WHERE platform = $1 AND platform_user_id = $2";
        Ok(on_pool!(self, p => sqlx::query_as(SQL).bind(platform).bind(platform_user_id).fetch_optional(p).await?))
    }

    /// The user revoked the app at the platform: the account becomes `revoked`, says why, and
    /// its tokens are erased; if it was active, its user's notification is written in the
    /// same transaction (its id returned). An account without tokens (already revoked, or
    /// disconnected) is left as it is, so a redelivered event changes nothing.
    pub async fn revoke_account(&self, a: &Account, reason: &str, now: Timestamp) -> Result<Option<i64>> {
        const STATUS: &str = "SELECT status FROM social_accounts WHERE id = $1";
        const FLIP: &str = "
            UPDATE social_accounts SET status = 'revoked', status_reason = $3,
                status_changed_at = CASE WHEN status = 'active' THEN $2 ELSE status_changed_at END,
                updated_at = $2, access_token_enc = NULL, refresh_token_enc = NULL, next_refresh_at = NULL,
                last_refresh_error = 'revoked', lease_owner = NULL, lease_expires_at = NULL
            WHERE id = $1 AND status <> 'disconnected' AND access_token_enc IS NOT NULL";
        let note = NewNotification {
            user_id: a.user_id.clone(),
            account_id: Some(a.id),
            kind: "access_revoked".into(),
            payload: serde_json::json!({ "platform": a.platform, "account_id": a.id, "username": a.username, "reason": reason }),
        };
        self.cancel_waiting_jobs(a.id, now).await?;
        write_tx!(self, tx => {
            let before: Option<String> = sqlx::query_scalar(STATUS).bind(a.id).fetch_optional(&mut *tx).await?;
            // A concurrent duplicate waits for this row and then finds no token: 0 rows.
            let flipped = sqlx::query(FLIP).bind(a.id).bind(now).bind(reason).execute(&mut *tx).await?.rows_affected();
            let note_id = if flipped == 1 && before.as_deref() == Some("active") {
                Some(insert_notification!(&mut *tx, note, now))
            } else {
                None
            };
            tx.commit().await?;
            Ok(note_id)
        })
    }

    /// Erases an account at its user's request, in one transaction: tokens, snapshots, posts,
    /// its notifications' contents, and the row's personal fields (username, name, scopes, the
    /// platform's user id — replaced, here and in the events that named it, so a later connect
    /// makes a new row). The row stays, as `disconnected`, for the ids history names. Running it
    /// again changes nothing more.
    pub async fn erase_account(&self, id: AccountId, now: Timestamp) -> Result<()> {
        self.cancel_waiting_jobs(id, now).await?;
        let erased_id = self.pool().pick("'erased:' || id::text", "'erased:' || id");
        let scrub = format!(
            "UPDATE social_accounts SET status = 'disconnected', status_reason = 'erased at the user''s request',
                status_changed_at = CASE WHEN status = 'disconnected' THEN status_changed_at ELSE $2 END, updated_at = $2,
                username = '', display_name = NULL, scopes = '', platform_user_id = {erased_id},
                access_token_enc = NULL, refresh_token_enc = NULL, next_refresh_at = NULL,
                last_refresh_error = NULL, last_sync_error = NULL, lease_owner = NULL, lease_expires_at = NULL
             WHERE id = $1"
        );
        write_tx!(self, tx => {
            sqlx::query("DELETE FROM account_snapshots WHERE account_id = $1").bind(id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM posts WHERE account_id = $1").bind(id).execute(&mut *tx).await?;
            sqlx::query("UPDATE notifications SET payload = '{}' WHERE account_id = $1").bind(id).execute(&mut *tx).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE platform_events SET platform_user_id = (SELECT {erased_id} FROM social_accounts WHERE id = $1)
                 WHERE (platform, platform_user_id) = (SELECT platform, platform_user_id FROM social_accounts WHERE id = $1)"
            )))
            .bind(id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(sqlx::AssertSqlSafe(scrub)).bind(id).bind(now).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Cancels the account's refresh and sync that wait to run (first run or retry): there is
    /// nothing left for them to do. Returns how many.
    pub async fn cancel_waiting_jobs(&self, id: AccountId, now: Timestamp) -> Result<u64> {
        let table = self.jobs_table();
        let (done, result) = self.pool().pick(
            ("to_timestamp($3::float8 / 1000)", "'{\"Err\": \"cancelled: access revoked at the platform\"}'::jsonb"),
            ("($3 / 1000)", "'{\"Err\": \"cancelled: access revoked at the platform\"}'"),
        );
        let sql = format!(
            "UPDATE {table} SET status = 'Killed', lock_by = NULL, lock_at = NULL, done_at = {done}, last_result = {result}
             WHERE dedup_key IN ($1, $2) AND job_type IN ('refresh', 'sync')
               AND (status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts))"
        );
        let (refresh, sync) = (crate::refresh::dedup_key(id), crate::sync::dedup_key(id));
        Ok(on_pool!(self, p => sqlx::query(sqlx::AssertSqlSafe(sql)).bind(refresh).bind(sync).bind(now.millis()).execute(p).await?.rows_affected()))
    }
}
