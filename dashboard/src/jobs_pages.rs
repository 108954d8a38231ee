//! `/dashboard/jobs`: the job list (filters, keyset paging, selection), a job's detail, and
//! the actions — retry, cancel, delete — on one job, a selection, or all matching a filter.

use chrono::NaiveDateTime;
use jobs::{
    Timestamp,
    store::{JobAction, JobFilter, JobRow, JobState, Selection},
};
use maud::{Markup, html};
use poem::{
    Request, Response, handler,
    IntoResponse,
    web::{Data, Html, Path, Query},
};
use serde::Deserialize;

use crate::{
    BASE, Dashboard,
    page::{self, Flash},
    session::{Session, redirect},
};

const PAGE: u32 = 50;

/// The list's query string: the filter, and where the page starts.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    queue: String,
    #[serde(default)]
    state: String,
    /// `YYYY-MM-DDTHH:MM` (UTC), as a `datetime-local` input sends it.
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    account: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    before: String,
}

impl ListQuery {
    /// The store's filter, or a message saying which field is malformed.
    fn filter(&self) -> Result<JobFilter, String> {
        let time = |s: &str, name: &str| -> Result<Option<Timestamp>, String> {
            if s.is_empty() {
                return Ok(None);
            }
            NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M")
                .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S"))
                .map(|t| Some(Timestamp::from(t.and_utc())))
                .map_err(|_| format!("“{name}” must look like 2026-11-26T03:00"))
        };
        let state = match self.state.as_str() {
            "" => None,
            s => Some(JobState::parse(s).ok_or_else(|| format!("unknown state “{s}”"))?),
        };
        let account_id = match self.account.trim() {
            "" => None,
            a => Some(a.parse::<i64>().map_err(|_| "the account id must be a number".to_owned())?),
        };
        let text = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        Ok(JobFilter {
            queue: text(&self.queue),
            state,
            created_from: time(&self.from, "from")?,
            created_to: time(&self.to, "to")?,
            account_id,
            error: text(&self.error),
            id: text(&self.id),
        })
    }

    fn pairs(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("queue", &self.queue),
            ("state", &self.state),
            ("from", &self.from),
            ("to", &self.to),
            ("account", &self.account),
            ("error", &self.error),
            ("id", &self.id),
        ]
    }

    fn url(&self) -> String {
        format!("{BASE}/jobs{}", page::query(&self.pairs()))
    }
}

#[handler]
pub async fn list(req: &Request, d: Data<&Dashboard>, q: Query<ListQuery>, flash: Query<Flash>) -> Html<String> {
    let mut flash = flash.0;
    let (rows, matching) = match q.filter() {
        Ok(filter) => {
            let before = Some(q.before.as_str()).filter(|b| !b.is_empty());
            match d.cx.store.search_jobs(&filter, before, PAGE + 1).await {
                Ok(rows) => (rows, true),
                Err(e) => {
                    tracing::warn!(target: "dashboard", error = %e, "job search failed");
                    flash.error = Some("The database did not answer; try again.".into());
                    (vec![], false)
                }
            }
        }
        Err(msg) => {
            flash.error = Some(msg);
            (vec![], false)
        }
    };
    let more = rows.len() > PAGE as usize;
    let rows = &rows[..rows.len().min(PAGE as usize)];
    let now = Timestamp::now();
    let read_only = d.config.read_only;
    let body = html! {
        (filter_form(&q))
        form #job-actions method="post" action={(BASE) "/jobs/act"} {
            (page::csrf_field(req))
            input type="hidden" name="back" value=(q.url());
            @for (k, v) in q.pairs() { input type="hidden" name={"f_" (k)} value=(v); }
            @if !read_only {
                div.actions {
                    span { "Selected: " }
                    @for a in ["retry", "cancel", "delete"] {
                        button type="submit" name="action" value=(a) data-scope="selected" { (a) }
                    }
                    span { " · All matching this filter: " }
                    @for a in ["retry", "cancel", "delete"] {
                        button type="submit" name="all" value=(a) { (a) " all" }
                    }
                }
            }
            table.jobs {
                thead { tr {
                    th { input type="checkbox" data-select-all aria-label="select all"; }
                    th { "Job" } th { "Queue" } th { "State" } th { "Attempts" } th { "Run at" } th { "Last error" }
                } }
                tbody {
                    @for j in rows {
                        tr data-state=(j.state().as_str()) {
                            td { input type="checkbox" name="id" value=(j.id) aria-label="select"; }
                            td { a href={(BASE) "/jobs/" (j.id)} { code { (j.id) } } }
                            td { (j.queue) }
                            td { span class={"state " (j.state().as_str())} { (j.state().as_str()) } }
                            td.num { (j.attempts) "/" (j.max_attempts) }
                            td title=(page::when(j.run_at)) { (page::relative(j.run_at, now)) }
                            td.err { (j.last_error().unwrap_or_default()) }
                        }
                    }
                    @if rows.is_empty() && matching { tr { td colspan="7" { "No job matches." } } }
                }
            }
        }
        @if more {
            @if let Some(last) = rows.last() {
                @let mut pairs = q.pairs();
                @let _ = pairs.push(("before", last.id.as_str()));
                a.next href={(BASE) "/jobs" (page::query(&pairs))} { "Older →" }
            }
        }
    };
    page::shell(req, "Jobs", &flash, body)
}

fn filter_form(q: &ListQuery) -> Markup {
    let queues = jobs::QUEUES;
    html! {
        form.filters #job-filter method="get" action={(BASE) "/jobs"} {
            label { "Queue " select name="queue" {
                option value="" { "any" }
                @for name in queues { option value=(name) selected[q.queue == name] { (name) } }
            } }
            label { "State " select name="state" {
                option value="" { "any" }
                @for s in JobState::ALL { option value=(s.as_str()) selected[q.state == s.as_str()] { (s.as_str()) } }
            } }
            label { "From (UTC) " input type="datetime-local" name="from" value=(q.from); }
            label { "To " input type="datetime-local" name="to" value=(q.to); }
            label { "Account " input type="text" name="account" value=(q.account) size="8" inputmode="numeric"; }
            label { "Error text " input type="search" name="error" value=(q.error); }
            label { "Job id " input type="search" name="id" value=(q.id) size="28"; }
            button type="submit" { "Filter" }
            a href={(BASE) "/jobs"} { "Clear" }
        }
    }
}

#[handler]
pub async fn detail(req: &Request, d: Data<&Dashboard>, id: Path<String>, flash: Query<Flash>) -> poem::Result<Html<String>> {
    let store = &d.cx.store;
    let job = store.job_row(&id).await.map_err(page::unavailable)?;
    let Some(job) = job else {
        let flash = Flash { error: Some(format!("No job {} (it may have been deleted).", id.0)), notice: None };
        return Ok(page::shell(req, "Job", &flash, html! { a href={(BASE) "/jobs"} { "← All jobs" } }));
    };
    let runs = store.job_runs(&job.id).await.map_err(page::unavailable)?;
    let now = Timestamp::now();
    let back = format!("{BASE}/jobs/{}", job.id);
    let body = html! {
        (job_facts(&job, runs.last().map(|r| r.worker.as_str()), now))
        @if !d.config.read_only {
            form.actions method="post" action={(BASE) "/jobs/act"} {
                (page::csrf_field(req))
                input type="hidden" name="id" value=(job.id);
                input type="hidden" name="back" value=(back);
                @for a in [JobAction::Retry, JobAction::Cancel, JobAction::Delete] {
                    @if a.applies_to().contains(&job.state()) {
                        button type="submit" name="action" value=(a.as_str()) { (a.as_str()) }
                    }
                }
            }
        }
        h2 { "Arguments" }
        pre.payload { (pretty(&job.payload)) }
        h2 { "Attempts" }
        table.runs {
            thead { tr { th { "#" } th { "Worker" } th { "Started" } th { "Run time" } th { "Outcome" } th { "Error" } } }
            tbody {
                @for r in &runs {
                    tr {
                        td.num { (r.attempt) }
                        td { code { (r.worker) } }
                        td { (page::when(r.started_at)) }
                        td.num { (r.finished_at.map(|f| page::span_ms(f.millis() - r.started_at.millis())).unwrap_or_else(|| "running".into())) }
                        td { (r.outcome.map(|o| format!("{o:?}").to_lowercase()).unwrap_or_default()) }
                        td.err { (r.error_class.as_deref().unwrap_or("")) " " (r.error.as_deref().unwrap_or("")) }
                    }
                }
                @if runs.is_empty() { tr { td colspan="6" { "Not run yet." } } }
            }
        }
        p { a href={(BASE) "/jobs" (page::query(&[("queue", &job.queue)]))} { "← " (job.queue) " jobs" } }
    };
    Ok(page::shell(req, &format!("Job {}", job.id), &flash, body))
}

/// `last_worker`: who ran the latest attempt (a finished job names no worker in its lock).
fn job_facts(job: &JobRow, last_worker: Option<&str>, now: Timestamp) -> Markup {
    html! {
        dl.facts {
            dt { "Queue" } dd { (job.queue) }
            dt { "State" } dd { span class={"state " (job.state().as_str())} { (job.state().as_str()) } " (" (job.status) ")" }
            dt { "Attempts" } dd { (job.attempts) " of " (job.max_attempts) }
            dt { "Created" } dd { (page::when_opt(job.created_at())) }
            dt { "Run at" } dd { (page::when(job.run_at)) " (" (page::relative(job.run_at, now)) ")" }
            @if job.state() == JobState::Running {
                dt { "Locked by" } dd { (job.lock_by.as_deref().unwrap_or("—")) " " (job.lock_at.map(|t| format!("since {}", page::when(t))).unwrap_or_default()) }
            } @else {
                dt { "Last worker" } dd { (last_worker.unwrap_or("—")) }
            }
            dt { "Finished" } dd { (page::when_opt(job.done_at)) }
            dt { "Last error" } dd.err { (job.last_error().unwrap_or_else(|| "—".into())) }
        }
    }
}

/// The arguments, indented. They never hold a secret (DESIGN.md invariant 7).
fn pretty(payload: &str) -> String {
    serde_json::from_str::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| payload.to_owned())
}

/// An action's form: either `action` on the checked `id`s, or `all` (an action) on every job
/// the `f_*` filter matches, which first asks for confirmation (`confirmed` carries the count
/// the operator saw). Parsed by hand: repeated `id` fields are the selection.
#[handler]
pub async fn act(req: &Request, d: Data<&Dashboard>, body: poem::Body) -> Response {
    let bytes = body.into_bytes().await.unwrap_or_default();
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(&bytes).into_owned().collect();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let field = |k: &str| get(k).unwrap_or_default();
    let ids: Vec<String> = pairs.iter().filter(|(k, _)| k == "id").map(|(_, v)| v.clone()).collect();
    let back = page::safe_back(get("back").as_deref(), &format!("{BASE}/jobs"));
    let fail = |msg: &str| redirect(&page::with_flash(&back, "error", msg));
    let Some(session) = req.extensions().get::<Session>() else { return fail("Sign in first.") };
    if !session.csrf_ok(&field("csrf")) {
        return fail("This form expired (security token mismatch); reload the page and try again.");
    }
    if d.config.read_only {
        return fail("The dashboard is read-only.");
    }
    let filter_query = ListQuery {
        queue: field("f_queue"),
        state: field("f_state"),
        from: field("f_from"),
        to: field("f_to"),
        account: field("f_account"),
        error: field("f_error"),
        id: field("f_id"),
        before: String::new(),
    };
    let (action, selection) = match (get("action").as_deref().and_then(JobAction::parse), get("all").as_deref().and_then(JobAction::parse)) {
        (_, Some(action)) => match filter_query.filter() {
            Ok(filter) => (action, Selection::Matching(filter)),
            Err(msg) => return fail(&msg),
        },
        (Some(action), None) if !ids.is_empty() => (action, Selection::Ids(ids)),
        (Some(_), None) => return fail("Select at least one job first."),
        (None, None) => return fail("Unknown action."),
    };
    let store = &d.cx.store;
    if let (Selection::Matching(filter), None) = (&selection, get("confirmed")) {
        return match store.count_jobs(filter).await {
            Ok(n) => confirm_page(req, action, &filter_query, n, &back).into_response(),
            Err(e) => fail(&page::unavailable(e).to_string()),
        };
    }
    match store.act_on_jobs(action, &selection, Timestamp::now()).await {
        Ok(changed) => {
            let scope = match &selection {
                Selection::Ids(ids) => format!("{} selected", ids.len()),
                Selection::Matching(_) => format!("all matching {}", page::query(&filter_query.pairs())),
            };
            tracing::info!(target: "dashboard", action = action.as_str(), scope = %scope, changed, "jobs action");
            let verb = match action {
                JobAction::Retry => "Retried",
                JobAction::Cancel => "Cancelled",
                JobAction::Delete => "Deleted",
            };
            let skipped = match &selection {
                Selection::Ids(ids) if ids.len() as u64 > changed => {
                    format!(" ({} left alone: not in a state that allows it)", ids.len() as u64 - changed)
                }
                _ => String::new(),
            };
            let plural = if changed == 1 { "" } else { "s" };
            redirect(&page::with_flash(&back, "notice", &format!("{verb} {changed} job{plural}{skipped}.")))
        }
        Err(e) => {
            tracing::warn!(target: "dashboard", action = action.as_str(), error = %e, "jobs action failed");
            fail("The action failed: the database did not answer. Nothing was changed; try again.")
        }
    }
}

fn confirm_page(req: &Request, action: JobAction, q: &ListQuery, n: i64, back: &str) -> Html<String> {
    let states: Vec<&str> = action.applies_to().iter().map(|s| s.as_str()).collect();
    let body = html! {
        form.confirm method="post" action={(BASE) "/jobs/act"} {
            (page::csrf_field(req))
            input type="hidden" name="back" value=(back);
            input type="hidden" name="all" value=(action.as_str());
            input type="hidden" name="confirmed" value=(n);
            @for (k, v) in q.pairs() { input type="hidden" name={"f_" (k)} value=(v); }
            p { "This will " strong { (action.as_str()) } " every job matching " code { (page::query(&q.pairs())) }
                " that is " (states.join(", ")) ". " strong #confirm-count { (n) } " jobs match now." }
            button type="submit" { (action.as_str()) " " (n) " jobs" }
            " " a href=(back) { "Cancel" }
        }
    };
    page::shell(req, "Confirm", &Flash::default(), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_filters_say_which_field() {
        let q = ListQuery { from: "yesterday".into(), ..ListQuery::default() };
        assert!(q.filter().unwrap_err().contains("from"));
        let q = ListQuery { account: "x".into(), ..ListQuery::default() };
        assert!(q.filter().unwrap_err().contains("account"));
        let q = ListQuery { state: "dead".into(), from: "2026-11-26T03:00".into(), ..ListQuery::default() };
        let f = q.filter().unwrap();
        assert_eq!(f.state, Some(JobState::Dead));
        assert_eq!(f.created_from.unwrap().to_datetime().to_rfc3339(), "2026-11-26T03:00:00+00:00");
    }
}
