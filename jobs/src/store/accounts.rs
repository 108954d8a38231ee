//! `social_accounts`: connections, their sealed tokens, refresh plan, sync state and lease.

use std::time::Duration;

use super::{Result, Store, outbox::NewNotification};

use crate::{
    domain::{AccountId, AccountStatus, Platform},
    time::Timestamp,
    vault::Sealed,
};

/// One connected account, as stored. Tokens stay sealed; open them with the vault.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Account {
    pub id: AccountId,
    pub user_id: String,
    pub platform: Platform,
    pub platform_user_id: String,
    pub username: String,
    pub display_name: Option<String>,
    pub status: AccountStatus,
    pub status_changed_at: Timestamp,
    /// Why it left `active`, in words, when the platform said (a revocation).
    pub status_reason: Option<String>,
    pub scopes: String,
    #[sqlx(rename = "access_token_enc")]
    pub access_token: Option<Sealed>,
    #[sqlx(rename = "refresh_token_enc")]
    pub refresh_token: Option<Sealed>,
    pub access_expires_at: Option<Timestamp>,
    pub refresh_expires_at: Option<Timestamp>,
    pub token_issued_at: Option<Timestamp>,
    pub last_refreshed_at: Option<Timestamp>,
    pub next_refresh_at: Option<Timestamp>,
    pub last_refresh_error: Option<String>,
    pub last_synced_at: Option<Timestamp>,
    pub last_sync_error: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What a completed connect knows about an account.
#[derive(Clone, Debug)]
pub struct NewAccount {
    pub user_id: String,
    pub platform: Platform,
    pub platform_user_id: String,
    pub username: String,
    pub display_name: Option<String>,
    pub scopes: String,
    pub access_token: Sealed,
    pub refresh_token: Option<Sealed>,
    pub access_expires_at: Timestamp,
    pub refresh_expires_at: Option<Timestamp>,
    pub next_refresh_at: Option<Timestamp>,
}

/// The result of one successful refresh.
#[derive(Clone, Debug)]
pub struct RefreshedTokens {
    pub access_token: Sealed,
    /// The rotated refresh token; `None` keeps the stored one.
    pub refresh_token: Option<Sealed>,
    pub access_expires_at: Timestamp,
    pub refresh_expires_at: Option<Timestamp>,
    pub next_refresh_at: Option<Timestamp>,
}

impl Store {
    /// Creates the account, or reconnects it (same platform user): new tokens, status active.
    pub async fn upsert_account(&self, a: &NewAccount, now: Timestamp) -> Result<Account> {
        const SQL: &str = "
            INSERT INTO social_accounts (user_id, platform, platform_user_id, username, display_name,
                status, status_changed_at, scopes, access_token_enc, refresh_token_enc,
                access_expires_at, refresh_expires_at, token_issued_at, next_refresh_at,
                created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $8, $9, $10, $11, $6, $12, $6, $6)
            ON CONFLICT (platform, platform_user_id) DO UPDATE SET
                user_id = excluded.user_id,
                username = excluded.username,
                display_name = excluded.display_name,
                status_changed_at = CASE WHEN social_accounts.status = 'active'
                    THEN social_accounts.status_changed_at ELSE excluded.status_changed_at END,
                status = 'active',
                scopes = excluded.scopes,
                access_token_enc = excluded.access_token_enc,
                refresh_token_enc = excluded.refresh_token_enc,
                access_expires_at = excluded.access_expires_at,
                refresh_expires_at = excluded.refresh_expires_at,
                token_issued_at = excluded.token_issued_at,
                next_refresh_at = excluded.next_refresh_at,
                last_refresh_error = NULL,
                status_reason = NULL,
                updated_at = excluded.updated_at
            RETURNING *";
        Ok(on_pool!(self, p => sqlx::query_as(SQL)
            .bind(&a.user_id)
            .bind(a.platform)
            .bind(&a.platform_user_id)
            .bind(&a.username)
            .bind(&a.display_name)
            .bind(now)
            .bind(&a.scopes)
            .bind(&a.access_token)
            .bind(&a.refresh_token)
            .bind(a.access_expires_at)
            .bind(a.refresh_expires_at)
            .bind(a.next_refresh_at)
            .fetch_one(p)
            .await?))
    }

    pub async fn account(&self, id: AccountId) -> Result<Option<Account>> {
        const SQL: &str = "SELECT * FROM social_accounts WHERE id = $1";
        Ok(on_pool!(self, p => sqlx::query_as(SQL).bind(id).fetch_optional(p).await?))
    }

    pub async fn accounts_of_user(&self, user_id: &str) -> Result<Vec<Account>> {
        const SQL: &str = "SELECT * FROM social_accounts WHERE user_id = $1 ORDER BY id";
        Ok(on_pool!(self, p => sqlx::query_as(SQL).bind(user_id).fetch_all(p).await?))
    }

    /// Active accounts whose access token expires before `expiring_before` and whose planned
    /// refresh (if any) falls before `planned_before`, in id order after `after` (keyset paging,
    /// so a sweep over 100 000 accounts never rescans). Yields each with its planned time.
    pub async fn accounts_due_for_refresh(
        &self,
        expiring_before: Timestamp,
        planned_before: Timestamp,
        after: AccountId,
        limit: u32,
    ) -> Result<Vec<(AccountId, Option<Timestamp>)>> {
        const SQL: &str = "
            SELECT id, next_refresh_at FROM social_accounts
            WHERE status = 'active' AND access_expires_at < $1
              AND (next_refresh_at IS NULL OR next_refresh_at < $2) AND id > $3
            ORDER BY id LIMIT $4";
        Ok(on_pool!(self, p => sqlx::query_as(SQL)
            .bind(expiring_before).bind(planned_before).bind(after).bind(i64::from(limit)).fetch_all(p).await?))
    }

    /// Active accounts not synced since `synced_before` (or never), in id order after `after`.
    pub async fn accounts_stale_for_sync(
        &self,
        synced_before: Timestamp,
        after: AccountId,
        limit: u32,
    ) -> Result<Vec<(AccountId, Platform)>> {
        const SQL: &str = "
            SELECT id, platform FROM social_accounts
            WHERE status = 'active' AND (last_synced_at IS NULL OR last_synced_at < $1) AND id > $2
            ORDER BY id LIMIT $3";
        Ok(on_pool!(self, p => sqlx::query_as(SQL)
            .bind(synced_before).bind(after).bind(i64::from(limit)).fetch_all(p).await?))
    }

    /// Sets the status; returns whether it changed.
    pub async fn set_account_status(&self, id: AccountId, status: AccountStatus, now: Timestamp) -> Result<bool> {
        const SQL: &str = "
            UPDATE social_accounts SET status = $2, status_changed_at = $3, updated_at = $3
            WHERE id = $1 AND status <> $2";
        let done = on_pool!(self, p => sqlx::query(SQL).bind(id).bind(status).bind(now).execute(p).await?.rows_affected());
        Ok(done == 1)
    }

    /// Takes the account's lease for `ttl` unless another live owner holds it. Re-taking one's
    /// own lease extends it. The lease, not a transaction, guards the platform call, so no
    /// database transaction is ever held across HTTP.
    pub async fn take_lease(&self, id: AccountId, owner: &str, now: Timestamp, ttl: Duration) -> Result<bool> {
        const SQL: &str = "
            UPDATE social_accounts SET lease_owner = $2, lease_expires_at = $3
            WHERE id = $1 AND (lease_owner IS NULL OR lease_expires_at <= $4 OR lease_owner = $2)";
        let done = on_pool!(self, p => sqlx::query(SQL)
            .bind(id).bind(owner).bind(now.plus(ttl)).bind(now).execute(p).await?.rows_affected());
        Ok(done == 1)
    }

    /// Releases the lease if `owner` still holds it.
    pub async fn release_lease(&self, id: AccountId, owner: &str) -> Result<()> {
        const SQL: &str = "
            UPDATE social_accounts SET lease_owner = NULL, lease_expires_at = NULL
            WHERE id = $1 AND lease_owner = $2";
        on_pool!(self, p => sqlx::query(SQL).bind(id).bind(owner).execute(p).await?.rows_affected());
        Ok(())
    }

    /// Stores refreshed tokens (the rotated refresh token in the same write) and releases the
    /// lease — only while `owner` still holds it, so a holder whose lease lapsed cannot
    /// overwrite a newer token. Returns whether it was stored.
    pub async fn record_refresh(
        &self,
        id: AccountId,
        owner: &str,
        t: &RefreshedTokens,
        now: Timestamp,
    ) -> Result<bool> {
        const SQL: &str = "
            UPDATE social_accounts SET
                access_token_enc = $3,
                refresh_token_enc = COALESCE($4, refresh_token_enc),
                access_expires_at = $5,
                refresh_expires_at = COALESCE($6, refresh_expires_at),
                next_refresh_at = $7,
                token_issued_at = $8, last_refreshed_at = $8, updated_at = $8,
                last_refresh_error = NULL,
                lease_owner = NULL, lease_expires_at = NULL
            WHERE id = $1 AND lease_owner = $2";
        let done = on_pool!(self, p => sqlx::query(SQL)
            .bind(id).bind(owner)
            .bind(&t.access_token).bind(&t.refresh_token)
            .bind(t.access_expires_at).bind(t.refresh_expires_at)
            .bind(t.next_refresh_at).bind(now)
            .execute(p).await?.rows_affected());
        Ok(done == 1)
    }

    /// Notes a failed refresh that will be retried (the account stays active).
    pub async fn record_refresh_error(&self, id: AccountId, error_class: &str, now: Timestamp) -> Result<()> {
        const SQL: &str = "UPDATE social_accounts SET last_refresh_error = $2, updated_at = $3 WHERE id = $1";
        on_pool!(self, p => sqlx::query(SQL).bind(id).bind(error_class).bind(now).execute(p).await?.rows_affected());
        Ok(())
    }

    pub async fn set_next_refresh(&self, id: AccountId, at: Option<Timestamp>) -> Result<()> {
        const SQL: &str = "UPDATE social_accounts SET next_refresh_at = $2 WHERE id = $1";
        on_pool!(self, p => sqlx::query(SQL).bind(id).bind(at).execute(p).await?.rows_affected());
        Ok(())
    }

    /// Marks an active account `reauth_required` and writes the user's notification, in one
    /// transaction. Returns the notification's id, or `None` if the account was not active
    /// (so running it twice notifies once).
    pub async fn mark_reauth_required(
        &self,
        id: AccountId,
        error_class: &str,
        note: &NewNotification,
        now: Timestamp,
    ) -> Result<Option<i64>> {
        const FLIP: &str = "
            UPDATE social_accounts SET status = 'reauth_required', status_changed_at = $2,
                updated_at = $2, last_refresh_error = $3, lease_owner = NULL, lease_expires_at = NULL
            WHERE id = $1 AND status = 'active'";
        write_tx!(self, tx => {
            let flipped = sqlx::query(FLIP).bind(id).bind(now).bind(error_class).execute(&mut *tx).await?;
            if flipped.rows_affected() == 0 {
                return Ok(None);
            }
            let note_id = insert_notification!(&mut *tx, note, now);
            tx.commit().await?;
            Ok(Some(note_id))
        })
    }

    /// The user disconnected: forget the tokens, keep the row (and by default its history).
    pub async fn disconnect_account(&self, id: AccountId, now: Timestamp) -> Result<bool> {
        const SQL: &str = "
            UPDATE social_accounts SET status = 'disconnected', status_changed_at = $2, updated_at = $2,
                access_token_enc = NULL, refresh_token_enc = NULL, next_refresh_at = NULL,
                lease_owner = NULL, lease_expires_at = NULL
            WHERE id = $1 AND status <> 'disconnected'";
        let done = on_pool!(self, p => sqlx::query(SQL).bind(id).bind(now).execute(p).await?.rows_affected());
        Ok(done == 1)
    }
}
