//! Re-encrypting every stored secret under the current key (`socialsync keys rotate`).
//!
//! Works in batches, each written as it goes, and only ever picks values whose key id is not
//! the current one — so an interrupted rotation resumes by simply running again. Each update
//! is conditional on the value it read, so a token refreshed meanwhile (already under the
//! current key) is never overwritten with an older one.

use super::{Result, Store};
use crate::{
    domain::Platform,
    vault::{Aad, Sealed, Vault},
};

/// What one rotation pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RotationProgress {
    /// Values now sealed under the current key.
    pub reencrypted: u64,
    /// Values that would not open (unknown key or tampered); left as they are and logged.
    pub unreadable: u64,
}

const ACCOUNT_FIELDS: [(&str, &str); 2] =
    [("access_token_enc", "access_token"), ("refresh_token_enc", "refresh_token")];
const STATE_FIELDS: [(&str, &str); 2] = [("pkce_verifier_enc", "pkce_verifier"), ("code_enc", "code")];

impl Store {
    /// Re-encrypts, `batch` rows at a time, every account token and OAuth state secret not yet
    /// under `vault`'s current key. `on_batch` sees the running totals after each batch.
    pub async fn rotate_secrets(
        &self,
        vault: &Vault,
        batch: u32,
        mut on_batch: impl FnMut(&RotationProgress),
    ) -> Result<RotationProgress> {
        let mut progress = RotationProgress::default();
        let current = format!("{}.%", vault.current_key_id());
        let is_same = self.pool().pick("IS NOT DISTINCT FROM", "IS");

        let mut after = 0i64;
        loop {
            const SQL: &str = "
                SELECT id, platform, platform_user_id, access_token_enc, refresh_token_enc
                FROM social_accounts
                WHERE id > $1 AND ((access_token_enc IS NOT NULL AND access_token_enc NOT LIKE $2)
                    OR (refresh_token_enc IS NOT NULL AND refresh_token_enc NOT LIKE $2))
                ORDER BY id LIMIT $3";
            let rows: Vec<(i64, Platform, String, Option<Sealed>, Option<Sealed>)> = on_pool!(self, p =>
                sqlx::query_as(SQL).bind(after).bind(&current).bind(i64::from(batch)).fetch_all(p).await?);
            let Some(last) = rows.last() else { break };
            after = last.0;
            for (id, platform, platform_user_id, access, refresh) in rows {
                for ((column, field), old) in ACCOUNT_FIELDS.into_iter().zip([access, refresh]) {
                    let aad = Aad::account(platform, &platform_user_id, field);
                    let Some(new) = reseal(vault, &aad, old.as_ref(), &mut progress) else { continue };
                    let sql = format!(
                        "UPDATE social_accounts SET {column} = $1 WHERE id = $2 AND {column} {is_same} $3"
                    );
                    on_pool!(self, p => sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(&new).bind(id).bind(&old).execute(p).await?.rows_affected());
                }
            }
            on_batch(&progress);
        }

        let mut after = String::new();
        loop {
            const SQL: &str = "
                SELECT state_hash, pkce_verifier_enc, code_enc FROM oauth_states
                WHERE state_hash > $1 AND ((pkce_verifier_enc IS NOT NULL AND pkce_verifier_enc NOT LIKE $2)
                    OR (code_enc IS NOT NULL AND code_enc NOT LIKE $2))
                ORDER BY state_hash LIMIT $3";
            let rows: Vec<(String, Option<Sealed>, Option<Sealed>)> = on_pool!(self, p =>
                sqlx::query_as(SQL).bind(&after).bind(&current).bind(i64::from(batch)).fetch_all(p).await?);
            let Some(last) = rows.last() else { break };
            after = last.0.clone();
            for (state_hash, verifier, code) in rows {
                for ((column, field), old) in STATE_FIELDS.into_iter().zip([verifier, code]) {
                    let aad = Aad::oauth_state(&state_hash, field);
                    let Some(new) = reseal(vault, &aad, old.as_ref(), &mut progress) else { continue };
                    let sql = format!(
                        "UPDATE oauth_states SET {column} = $1 WHERE state_hash = $2 AND {column} {is_same} $3"
                    );
                    on_pool!(self, p => sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(&new).bind(&state_hash).bind(&old).execute(p).await?.rows_affected());
                }
            }
            on_batch(&progress);
        }
        Ok(progress)
    }
}

/// The value sealed under the current key, or `None` if it needs no change or cannot be read.
fn reseal(vault: &Vault, aad: &Aad, old: Option<&Sealed>, progress: &mut RotationProgress) -> Option<Sealed> {
    let old = old.filter(|s| !vault.is_current(s))?;
    match vault.open(aad, old) {
        Ok(plain) => {
            progress.reencrypted += 1;
            Some(vault.seal(aad, &plain))
        }
        Err(e) => {
            progress.unreadable += 1;
            tracing::warn!(target: "vault", key_id = old.key_id(), error = %e, "cannot re-encrypt a stored secret");
            None
        }
    }
}
