//! `/dashboard/accounts`: accounts searched by user, username, platform and status, with their
//! token expiry, next planned refresh and last sync; the `reauth_required` and `revoked` lists and the weekly
//! report of accounts that became inactive are two presets of the same search.

use std::time::Duration;

use jobs::{
    AccountId, AccountStatus, Platform, Timestamp,
    store::{AccountFilter, AccountRow},
};
use maud::{Markup, html};
use poem::{
    Request, handler,
    web::{Data, Html, Query},
};
use serde::Deserialize;

use crate::{
    BASE, Dashboard,
    page::{self, Flash},
};

const PAGE: u32 = 50;
const WEEK: Duration = Duration::from_secs(7 * 86_400);

#[derive(Debug, Default, Deserialize)]
pub struct AccountsQuery {
    #[serde(default)]
    user: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    platform: String,
    #[serde(default)]
    status: String,
    /// `week`: only accounts that became inactive (reauth_required, revoked or disconnected) in the last 7 days.
    #[serde(default)]
    report: String,
    #[serde(default)]
    after: Option<i64>,
}

#[handler]
pub async fn show(req: &Request, d: Data<&Dashboard>, q: Query<AccountsQuery>, flash: Query<Flash>) -> Html<String> {
    let mut flash = flash.0;
    let now = Timestamp::now();
    let weekly = q.report == "week";
    let platform = q.platform.parse::<Platform>().ok();
    let status = q.status.parse::<AccountStatus>().ok();
    if (!q.platform.is_empty() && platform.is_none()) || (!q.status.is_empty() && status.is_none()) {
        flash.error = Some("Unknown platform or status; showing every account.".into());
    }
    let filter = AccountFilter {
        user_id: Some(q.user.trim().to_owned()),
        username: Some(q.username.trim().to_owned()),
        platform,
        status,
        status_changed_since: weekly.then(|| now.minus(WEEK)),
    };
    let store = &d.cx.store;
    let after = AccountId(q.after.unwrap_or(0));
    let rows = if weekly && status.is_none() {
        // Every inactive status, merged by id.
        let mut all = vec![];
        for s in [AccountStatus::ReauthRequired, AccountStatus::Revoked, AccountStatus::Disconnected] {
            let f = AccountFilter { status: Some(s), ..filter.clone() };
            all.extend(store.search_accounts(&f, after, PAGE + 1).await.unwrap_or_default());
        }
        all.sort_by_key(|a| a.id.0);
        all.truncate(PAGE as usize + 1);
        Ok(all)
    } else {
        store.search_accounts(&filter, after, PAGE + 1).await
    };
    let rows = rows.unwrap_or_else(|e| {
        tracing::warn!(target: "dashboard", error = %e, "account search failed");
        flash.error = Some("The database did not answer; try again.".into());
        vec![]
    });
    let more = rows.len() > PAGE as usize;
    let rows = &rows[..rows.len().min(PAGE as usize)];
    let title = if weekly { "Accounts that became inactive in the last 7 days" } else { "Accounts" };
    let body = html! {
        (search_form(&q))
        p.presets {
            a href={(BASE) "/accounts?status=reauth_required"} { "Needs re-authorisation" } " · "
            a href={(BASE) "/accounts?status=revoked"} { "Revoked by the user" } " · "
            a href={(BASE) "/accounts?report=week"} { "Weekly report: became inactive in the last 7 days" }
        }
        (table(rows, now))
        @if more {
            @if let Some(last) = rows.last() {
                a.next href={(BASE) "/accounts" (page::query(&[("user", &q.user), ("username", &q.username), ("platform", &q.platform), ("status", &q.status), ("report", &q.report), ("after", &last.id.0.to_string())]))} { "More →" }
            }
        }
    };
    page::shell(req, title, &flash, body)
}

fn search_form(q: &AccountsQuery) -> Markup {
    html! {
        form.filters method="get" action={(BASE) "/accounts"} {
            label { "User " input type="search" name="user" value=(q.user); }
            label { "Username " input type="search" name="username" value=(q.username) placeholder="starts with"; }
            label { "Platform " select name="platform" {
                option value="" { "any" }
                @for p in ["instagram", "tiktok"] { option value=(p) selected[q.platform == p] { (p) } }
            } }
            label { "Status " select name="status" {
                option value="" { "any" }
                @for s in ["active", "reauth_required", "revoked", "disconnected"] { option value=(s) selected[q.status == s] { (s) } }
            } }
            @if q.report == "week" { input type="hidden" name="report" value="week"; }
            button type="submit" { "Search" }
            a href={(BASE) "/accounts"} { "Clear" }
        }
    }
}

fn table(rows: &[AccountRow], now: Timestamp) -> Markup {
    html! {
        table.accounts {
            thead { tr {
                th { "Id" } th { "User" } th { "Account" } th { "Status" } th { "Token expires" }
                th { "Next refresh" } th { "Last sync" } th { "Sync took" } th { "Last error" }
            } }
            tbody {
                @for a in rows {
                    tr {
                        td.num { a href={(BASE) "/jobs?account=" (a.id.0)} { (a.id.0) } }
                        td { (a.user_id) }
                        td { a href={(BASE) "/accounts/" (a.id.0)} { (a.platform.as_str()) " @" (a.username) } }
                        td { span class={"status " (a.status.as_str())} { (a.status.as_str()) } " " small { (page::relative(a.status_changed_at, now)) } }
                        td { (a.access_expires_at.map(|t| page::relative(t, now)).unwrap_or_else(|| "—".into())) }
                        td { (a.next_refresh_at.map(|t| page::relative(t, now)).unwrap_or_else(|| "—".into())) }
                        td { (a.last_synced_at.map(|t| page::relative(t, now)).unwrap_or_else(|| "never".into())) }
                        td.num { (a.last_sync_ms.map(page::span_ms).unwrap_or_else(|| "—".into())) }
                        td.err { (a.last_refresh_error.as_deref().or(a.last_sync_error.as_deref()).unwrap_or("")) }
                    }
                }
                @if rows.is_empty() { tr { td colspan="9" { "No account matches." } } }
            }
        }
    }
}
