//! `oauth_states`: one row per started connect. The state itself is never stored, only its
//! SHA-256, so a leaked table cannot be replayed against the callback.

use super::{Result, Store};
use crate::{domain::Platform, time::Timestamp, vault::Sealed};

#[derive(Clone, Debug)]
pub struct NewOAuthState {
    pub state_hash: String,
    pub user_id: String,
    pub platform: Platform,
    pub pkce_verifier: Option<Sealed>,
    pub expires_at: Timestamp,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct OAuthState {
    pub state_hash: String,
    pub user_id: String,
    pub platform: Platform,
    #[sqlx(rename = "pkce_verifier_enc")]
    pub pkce_verifier: Option<Sealed>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
    #[sqlx(rename = "code_enc")]
    pub code: Option<Sealed>,
    /// Set once the connect job has stored the account.
    pub account_id: Option<crate::domain::AccountId>,
}

impl Store {
    pub async fn create_oauth_state(&self, s: &NewOAuthState, now: Timestamp) -> Result<()> {
        const SQL: &str = "
            INSERT INTO oauth_states (state_hash, user_id, platform, pkce_verifier_enc, created_at, expires_at)
            VALUES ($1, $2, $3, $4, $5, $6)";
        on_pool!(self, p => sqlx::query(SQL)
            .bind(&s.state_hash).bind(&s.user_id).bind(s.platform).bind(&s.pkce_verifier)
            .bind(now).bind(s.expires_at)
            .execute(p).await?.rows_affected());
        Ok(())
    }

    /// Consumes the state exactly once: it must exist, be for `platform`, be unexpired and
    /// unused. Stores the sealed authorization code with it in the same statement. `None`
    /// means the state is not (or no longer) valid; which of those is not said, on purpose.
    pub async fn consume_oauth_state(
        &self,
        state_hash: &str,
        platform: Platform,
        code: Option<&Sealed>,
        now: Timestamp,
    ) -> Result<Option<OAuthState>> {
        const SQL: &str = "
            UPDATE oauth_states SET used_at = $3, code_enc = $4
            WHERE state_hash = $1 AND platform = $2 AND used_at IS NULL AND expires_at > $3
            RETURNING *";
        Ok(on_pool!(self, p => sqlx::query_as(SQL)
            .bind(state_hash).bind(platform).bind(now).bind(code)
            .fetch_optional(p).await?))
    }

    pub async fn oauth_state(&self, state_hash: &str) -> Result<Option<OAuthState>> {
        const SQL: &str = "SELECT * FROM oauth_states WHERE state_hash = $1";
        Ok(on_pool!(self, p => sqlx::query_as(SQL).bind(state_hash).fetch_optional(p).await?))
    }

    /// Records the account a state's connect produced.
    pub async fn complete_oauth_state(&self, state_hash: &str, account: crate::domain::AccountId) -> Result<()> {
        const SQL: &str = "UPDATE oauth_states SET account_id = $2 WHERE state_hash = $1";
        on_pool!(self, p => sqlx::query(SQL).bind(state_hash).bind(account).execute(p).await?.rows_affected());
        Ok(())
    }

    /// Deletes states that expired before `before`; returns how many.
    pub async fn purge_oauth_states(&self, before: Timestamp) -> Result<u64> {
        const SQL: &str = "DELETE FROM oauth_states WHERE expires_at < $1";
        Ok(on_pool!(self, p => sqlx::query(SQL).bind(before).execute(p).await?.rows_affected()))
    }
}
