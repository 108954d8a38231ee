//! Reads for ops: accounts searched by user, name, platform and status (no token columns ever
//! leave this module), and the pacing gates' backlog. (The health figures: `rollups`.)

use super::{Result, Store};
use crate::{
    domain::{AccountId, AccountStatus, Platform},
    time::Timestamp,
};

/// What the accounts list filters by; every field optional.
#[derive(Clone, Debug, Default)]
pub struct AccountFilter {
    pub user_id: Option<String>,
    /// A prefix of the username, case-insensitive.
    pub username: Option<String>,
    pub platform: Option<Platform>,
    pub status: Option<AccountStatus>,
    /// Only accounts whose status changed at or after this (the weekly report).
    pub status_changed_since: Option<Timestamp>,
}

/// An account as ops see it: never its tokens.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AccountRow {
    pub id: AccountId,
    pub user_id: String,
    pub platform: Platform,
    pub username: String,
    pub status: AccountStatus,
    pub status_changed_at: Timestamp,
    pub access_expires_at: Option<Timestamp>,
    pub next_refresh_at: Option<Timestamp>,
    pub last_refresh_error: Option<String>,
    pub last_synced_at: Option<Timestamp>,
    pub last_sync_error: Option<String>,
    /// How long the latest finished sync attempt took, ms.
    pub last_sync_ms: Option<i64>,
}

impl Store {
    /// Up to `limit` accounts matching `filter`, by id, after `after`.
    pub async fn search_accounts(&self, filter: &AccountFilter, after: AccountId, limit: u32) -> Result<Vec<AccountRow>> {
        let like = self.pool().pick("ILIKE", "LIKE");
        let sql = format!(
            "SELECT a.id, a.user_id, a.platform, a.username, a.status, a.status_changed_at, a.access_expires_at,
                a.next_refresh_at, a.last_refresh_error, a.last_synced_at, a.last_sync_error,
                (SELECT r.finished_at - r.started_at FROM job_runs r
                  WHERE r.account_id = a.id AND r.queue = 'sync' AND r.finished_at IS NOT NULL
                  ORDER BY r.started_at DESC LIMIT 1) AS last_sync_ms
             FROM social_accounts a
             WHERE a.id > $1
               AND ($2 IS NULL OR a.user_id = $2)
               AND ($3 IS NULL OR a.username {like} $3 ESCAPE '\\')
               AND ($4 IS NULL OR a.platform = $4)
               AND ($5 IS NULL OR a.status = $5)
               AND ($6 IS NULL OR a.status_changed_at >= $6)
             ORDER BY a.id LIMIT $7"
        );
        let username = filter
            .username
            .as_deref()
            .filter(|u| !u.is_empty())
            .map(|u| format!("{}%", u.trim_start_matches('@').replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")));
        let user = filter.user_id.clone().filter(|u| !u.is_empty());
        let platform = filter.platform.map(|p| p.as_str());
        let status = filter.status.map(|s| s.as_str());
        let since = filter.status_changed_since.map(|t| t.millis());
        Ok(on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(after).bind(user).bind(username).bind(platform).bind(status).bind(since).bind(i64::from(limit))
            .fetch_all(p).await?))
    }

    /// Sync jobs waiting (pending or scheduled) per platform: the pacing gates' backlog.
    pub async fn sync_backlog(&self) -> Result<Vec<(Platform, i64)>> {
        let sql = self.pool().pick(
            "SELECT platform, COUNT(*) FROM apalis.jobs
             WHERE job_type = 'sync' AND status = 'Pending' AND platform IS NOT NULL GROUP BY 1 ORDER BY 1",
            "SELECT a.platform, COUNT(*) FROM Jobs j
               JOIN social_accounts a ON a.id = json_extract(CAST(j.job AS TEXT), '$.account_id')
             WHERE j.job_type = 'sync' AND j.status = 'Pending' GROUP BY 1 ORDER BY 1",
        );
        Ok(on_pool!(self, p => sqlx::query_as(sql).fetch_all(p).await?))
    }
}
