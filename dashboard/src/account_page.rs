//! `/dashboard/accounts/{id}`: one account as ops need it in an incident or a support ticket —
//! its status and why, its token's timeline (issued, expires, next refresh, the last refresh's
//! outcome; never a token), followers over time, the jobs waiting for it, its latest attempts
//! on every queue and its user's notifications about it. Its actions (sync now, refresh now,
//! mark for reconnection, disconnect) are CSRF-checked POSTs, refused in read-only mode.

use jobs::{
    AccountId, AccountStatus, Timestamp,
    store::{Account, JobRun, Notification, Snapshot},
    sync::{self, SyncReason},
};
use maud::{Markup, html};
use poem::{
    Request, Response, handler,
    web::{Data, Html, Path, Query},
};

use crate::{
    BASE, Dashboard,
    chart::{self, Chart, Column},
    page::{self, Flash, unavailable},
    session::redirect,
};

/// Attempts and notifications shown; snapshots drawn (one a day by the nightly sync).
const RUNS: u32 = 30;
const NOTES: u32 = 10;
const SNAPSHOTS: u32 = 90;

/// What the account page offers, by the form's `action` value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Sync,
    Refresh,
    Reconnect,
    Disconnect,
}

impl Action {
    const ALL: [Action; 4] = [Action::Sync, Action::Refresh, Action::Reconnect, Action::Disconnect];

    fn key(self) -> &'static str {
        match self {
            Action::Sync => "sync",
            Action::Refresh => "refresh",
            Action::Reconnect => "reconnect",
            Action::Disconnect => "disconnect",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Action::Sync => "Sync now",
            Action::Refresh => "Refresh the token now",
            Action::Reconnect => "Mark for reconnection (notifies the user)",
            Action::Disconnect => "Disconnect",
        }
    }

    /// Whether it makes sense on an account in `status`: work needs an active account; a
    /// disconnected one has nothing left to end.
    fn applies_to(self, status: AccountStatus) -> bool {
        match self {
            Action::Sync | Action::Refresh | Action::Reconnect => status == AccountStatus::Active,
            Action::Disconnect => status != AccountStatus::Disconnected,
        }
    }
}

#[handler]
pub async fn show(req: &Request, d: Data<&Dashboard>, id: Path<i64>, flash: Query<Flash>) -> poem::Result<Html<String>> {
    let store = &d.cx.store;
    let id = AccountId(id.0);
    let Some(a) = store.account(id).await.map_err(unavailable)? else {
        let flash = Flash { error: Some(format!("No account {}.", id.0)), notice: None };
        return Ok(page::shell(req, "Account", &flash, html! { a href={(BASE) "/accounts"} { "← All accounts" } }));
    };
    let (sync_key, refresh_key) = (sync::dedup_key(id), jobs::refresh::dedup_key(id));
    let (snapshots, runs, notes, sync_job, refresh_job) = tokio::try_join!(
        store.snapshots(id, SNAPSHOTS),
        store.account_runs(id, RUNS),
        store.notifications_of_user(&a.user_id, 100),
        store.waiting_job(sync::KIND, Some(&sync_key)),
        store.waiting_job(jobs::refresh::KIND, Some(&refresh_key)),
    )
    .map_err(unavailable)?;
    let notes: Vec<Notification> = notes.into_iter().filter(|n| n.account_id == Some(id)).take(NOTES as usize).collect();
    let now = Timestamp::now();
    let body = html! {
        (facts(&a, now))
        @if !d.config.read_only { (actions(req, &a)) }
        h2 { "Token" }
        (token(&a, now))
        h2 { "Waiting jobs" }
        ul.waiting {
            li { "Sync: " (job_link(sync_job.as_deref())) }
            li { "Token refresh: " (job_link(refresh_job.as_deref())) }
        }
        h2 { "Followers" }
        (followers(&snapshots))
        h2 { "Latest attempts" }
        (attempts(&runs))
        h2 { "Notifications to the user about it" }
        (notifications(&notes))
        p { a href={(BASE) "/accounts" (page::query(&[("user", &a.user_id)]))} { "← Accounts of " (a.user_id) } }
    };
    Ok(page::shell(req, &format!("{} @{}", a.platform, a.username), &flash.0, body))
}

fn facts(a: &Account, now: Timestamp) -> Markup {
    html! {
        dl.facts {
            dt { "Account" } dd { (a.id.0) " · " (a.platform.as_str()) " user " code { (a.platform_user_id) } }
            dt { "User" } dd { (a.user_id) }
            dt { "Status" } dd {
                span class={"status " (a.status.as_str())} { (a.status.as_str()) }
                " since " (page::when(a.status_changed_at)) " (" (page::relative(a.status_changed_at, now)) ")"
                @if let Some(r) = &a.status_reason { ": " (r) }
            }
            dt { "Connected" } dd { (page::when(a.created_at)) }
            dt { "Scopes" } dd { (if a.scopes.is_empty() { "—" } else { &a.scopes }) }
            dt { "Last sync" } dd {
                (a.last_synced_at.map(|t| page::relative(t, now)).unwrap_or_else(|| "never".into()))
                @if let Some(e) = &a.last_sync_error { span.err { " — last error: " (e) } }
            }
        }
    }
}

fn token(a: &Account, now: Timestamp) -> Markup {
    let at = |t: Option<Timestamp>| t.map_or_else(|| "—".to_owned(), |t| format!("{} ({})", page::when(t), page::relative(t, now)));
    let last = match (&a.last_refresh_error, a.last_refreshed_at) {
        (Some(e), _) => html! { span.err { "failed: " (e) } },
        (None, Some(_)) => html! { "succeeded" },
        (None, None) => html! { "not refreshed yet" },
    };
    html! {
        table.token {
            tbody {
                tr { th { "Issued" } td { (at(a.token_issued_at)) } }
                tr { th { "Expires" } td { (at(a.access_expires_at)) } }
                tr { th { "Refresh token expires" } td { (at(a.refresh_expires_at)) } }
                tr { th { "Next refresh" } td { (at(a.next_refresh_at)) } }
                tr { th { "Last refresh" } td { (at(a.last_refreshed_at)) } }
                tr { th { "Last refresh's outcome" } td { (last) } }
                tr { th { "Stored tokens" } td { (if a.access_token.is_some() { "access token, encrypted" } else { "none" }) (if a.refresh_token.is_some() { " and refresh token, encrypted" } else { "" }) } }
            }
        }
    }
}

fn job_link(id: Option<&str>) -> Markup {
    html! {
        @match id {
            Some(id) => a href={(BASE) "/jobs/" (id)} { code { (id) } },
            None => "none",
        }
    }
}

fn followers(snapshots: &[Snapshot]) -> Markup {
    let with_count: Vec<&Snapshot> = snapshots.iter().rev().filter(|s| s.followers_count.is_some()).collect();
    let (Some(first), Some(last)) = (with_count.first(), with_count.last()) else {
        return html! { p { "No snapshot yet: the first sync takes one." } };
    };
    let day = |t: Timestamp| t.to_datetime().format("%Y-%m-%d").to_string();
    let columns = with_count
        .iter()
        .map(|s| {
            let n = s.followers_count.unwrap_or(0);
            Column { values: vec![n as f64], title: format!("{} UTC: {n} followers", page::when(s.taken_at)) }
        })
        .collect();
    html! {
        (page::raw(chart::draw(&Chart {
            columns,
            series: &["ok"],
            target: None,
            max: None,
            label: "Followers at each sync",
            unit: "followers",
            ends: (day(first.taken_at), day(last.taken_at)),
        })))
        p.figure { (last.followers_count.unwrap_or(0)) " followers at the last sync, " (with_count.len()) (if with_count.len() == 1 { " snapshot" } else { " snapshots" }) " shown" }
    }
}

fn attempts(runs: &[JobRun]) -> Markup {
    html! {
        table.runs {
            thead { tr { th { "Queue" } th { "Job" } th { "#" } th { "Started" } th { "Run time" } th { "Outcome" } th { "Error" } } }
            tbody {
                @for r in runs {
                    tr {
                        td { (r.queue) }
                        td { a href={(BASE) "/jobs/" (r.job_id)} { code { (r.job_id) } } }
                        td.num { (r.attempt) }
                        td { (page::when(r.started_at)) }
                        td.num { (r.finished_at.map(|f| page::span_ms(f.millis() - r.started_at.millis())).unwrap_or_else(|| "running".into())) }
                        td { (r.outcome.map(|o| format!("{o:?}").to_lowercase()).unwrap_or_default()) }
                        td.err { (r.error_class.as_deref().unwrap_or("")) " " (r.error.as_deref().unwrap_or("")) }
                    }
                }
                @if runs.is_empty() { tr { td colspan="7" { "No attempt recorded (or all past retention)." } } }
            }
        }
    }
}

fn notifications(notes: &[Notification]) -> Markup {
    html! {
        table.notes {
            thead { tr { th { "Kind" } th { "Written" } th { "Delivered" } th { "Attempts" } th { "Last error" } } }
            tbody {
                @for n in notes {
                    tr {
                        td { (n.kind) }
                        td { (page::when(n.created_at)) }
                        td { (page::when_opt(n.delivered_at)) }
                        td.num { (n.attempts) }
                        td.err { (n.last_error.as_deref().unwrap_or("")) }
                    }
                }
                @if notes.is_empty() { tr { td colspan="5" { "None." } } }
            }
        }
    }
}

fn actions(req: &Request, a: &Account) -> Markup {
    html! {
        form.actions method="post" action={(BASE) "/accounts/" (a.id.0) "/act"} {
            (page::csrf_field(req))
            @for action in Action::ALL {
                @if action.applies_to(a.status) {
                    button type="submit" name="action" value=(action.key()) { (action.label()) }
                }
            }
        }
    }
}

/// `POST /dashboard/accounts/{id}/act`: one action, back to the account's page with its outcome.
#[handler]
pub async fn act(req: &Request, d: Data<&Dashboard>, id: Path<i64>, body: poem::Body) -> Response {
    let back = format!("{BASE}/accounts/{}", id.0);
    let done = |key: &str, msg: &str| redirect(&page::with_flash(&back, key, msg));
    let form = match page::action_form(req, &d, body).await {
        Ok((form, _)) => form,
        Err(refused) => return done("error", refused),
    };
    let Some(action) = Action::ALL.into_iter().find(|a| a.key() == form.get("action")) else { return done("error", "Unknown action.") };
    let cx = &d.cx;
    let account = match cx.store.account(AccountId(id.0)).await {
        Ok(Some(a)) => a,
        Ok(None) => return done("error", &format!("No account {}.", id.0)),
        Err(e) => return done("error", &unavailable(e).to_string()),
    };
    if !action.applies_to(account.status) {
        return done("error", &format!("The account is {}: “{}” does not apply.", account.status, action.label()));
    }
    let now = cx.now();
    // Each action's outcome in words; a failure is logged and said without its details.
    let failed = |e: &dyn std::fmt::Display| {
        tracing::warn!(target: "dashboard", account_id = id.0, action = action.key(), error = %e, "account action failed");
        "The action failed: the database or the platform did not answer. Try again.".to_owned()
    };
    let outcome = match action {
        Action::Sync => cx.enqueue(sync::job(account.id, SyncReason::Manual, now)).await.map(|j| enqueued("A sync", &j)).map_err(|e| failed(&e)),
        Action::Refresh => cx.enqueue(jobs::refresh::job(account.id, now, now)).await.map(|j| enqueued("A token refresh", &j)).map_err(|e| failed(&e)),
        Action::Reconnect => jobs::refresh::mark_reauth(cx, &account, "marked for reconnection by ops")
            .await
            .map(|()| "Marked for reconnection: the user is notified and asked to connect again.".to_owned())
            .map_err(|e| failed(&e)),
        Action::Disconnect => jobs::connect::disconnect(cx, &account, d.config.keep_history_on_disconnect)
            .await
            .map(|_| "Disconnected: the grant is revoked where the platform allows it, the tokens are forgotten.".to_owned())
            .map_err(|e| failed(&e)),
    };
    match outcome {
        Ok(msg) => {
            tracing::warn!(target: "dashboard", account_id = id.0, action = action.key(), "account action");
            done("notice", &msg)
        }
        Err(msg) => done("error", &msg),
    }
}

fn enqueued(what: &str, job: &jobs::store::Enqueued) -> String {
    if job.created { format!("{what} is queued: job {}.", job.id) } else { format!("{what} was already waiting: job {}.", job.id) }
}
