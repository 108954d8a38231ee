//! `audit_log`: what ops did, appended by the dashboard and the ops commands, read by the
//! dashboard's Audit page, deleted by the pruner past `RETAIN_AUDIT`.

use super::{Result, Store};
use crate::time::Timestamp;

/// One action, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: i64,
    pub at: Timestamp,
    /// Who: an `OPS_USERS` name, `ops` (the shared password), `ana (cli)`.
    pub actor: String,
    /// What, as a stable dotted name: `jobs.retry`, `pause`, `account.sync`, `sign_in.failed`.
    pub action: String,
    /// On what: a job id, a filter and how many it matched, a scope, an account.
    pub target: String,
    /// How it ended: `ok: …`, `refused: …`, `failed: …`.
    pub outcome: String,
}

/// An action to record.
#[derive(Clone, Debug)]
pub struct NewAuditEntry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub outcome: &'a str,
}

/// What the Audit page asks for: exact actor and action when given, newest first, before `before_id`.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    /// An action or the start of one: `jobs` matches `jobs.retry` and `jobs.delete`.
    pub action: Option<String>,
}

impl Store {
    pub async fn audit(&self, e: &NewAuditEntry<'_>, now: Timestamp) -> Result<()> {
        const SQL: &str = "INSERT INTO audit_log (at, actor, action, target, outcome) VALUES ($1, $2, $3, $4, $5)";
        on_pool!(self, p => sqlx::query(SQL).bind(now).bind(e.actor).bind(e.action).bind(e.target).bind(e.outcome).execute(p).await.map(drop)?);
        Ok(())
    }

    /// Up to `limit` entries matching `f`, newest first, older than entry `before_id` if given.
    pub async fn audit_entries(&self, f: &AuditFilter, before_id: Option<i64>, limit: u32) -> Result<Vec<AuditEntry>> {
        const SQL: &str = "SELECT id, at, actor, action, target, outcome FROM audit_log
            WHERE ($1 IS NULL OR actor = $1) AND ($2 IS NULL OR action = $2 OR action LIKE $2 || '.%') AND ($3 IS NULL OR id < $3)
            ORDER BY id DESC LIMIT $4";
        let (actor, action) = (f.actor.as_deref().filter(|a| !a.is_empty()), f.action.as_deref().filter(|a| !a.is_empty()));
        Ok(on_pool!(self, p => sqlx::query_as(SQL).bind(actor).bind(action).bind(before_id).bind(i64::from(limit)).fetch_all(p).await?))
    }

    /// Deletes up to `batch` entries recorded before `before`.
    pub async fn prune_audit(&self, before: Timestamp, batch: u32) -> Result<u64> {
        const SQL: &str = "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < $1 ORDER BY at LIMIT $2)";
        Ok(on_pool!(self, p => sqlx::query(SQL).bind(before).bind(i64::from(batch)).execute(p).await?.rows_affected()))
    }
}
