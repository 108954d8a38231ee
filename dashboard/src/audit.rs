//! The audit trail on the dashboard: every action form posted — job actions, pauses and
//! resumes, account actions, runs by hand — is recorded by [`actions`] in front of the pages,
//! with who (the session's operator), what (the form's action), on what (its ids, filter,
//! account or scope) and the outcome its answer carried back; sign-ins are recorded by the
//! sign-in handler. `/dashboard/audit` lists and filters them.

use std::sync::Arc;

use jobs::{
    Timestamp,
    store::{AuditEntry, AuditFilter, NewAuditEntry},
};
use maud::html;
use poem::{
    Endpoint, IntoResponse, Request, Response, handler,
    http::{Method, header},
    web::{Data, Html, Query},
};
use serde::Deserialize;

use crate::{
    BASE, Dashboard,
    page::{self, Flash},
    session::Session,
};

const PAGE: u32 = 50;

/// Form fields that say nothing about what was acted on.
const NOT_THE_TARGET: [&str; 5] = ["csrf", "back", "action", "all", "confirmed"];

/// Appends one entry; a failure is logged, never in the way of the action.
pub async fn record(d: &Dashboard, actor: &str, action: &str, target: &str, outcome: &str) {
    let entry = NewAuditEntry { actor, action, target, outcome };
    if let Err(e) = d.cx.store.audit(&entry, Timestamp::now()).await {
        tracing::warn!(target: "dashboard", error = %e, actor, action, target, outcome, "cannot write the audit trail");
    }
}

/// In front of the pages: records each POST with its outcome.
pub async fn actions<E: Endpoint>(next: Arc<E>, mut req: Request) -> poem::Result<Response> {
    if req.method() != Method::POST {
        return next.call(req).await.map(IntoResponse::into_response);
    }
    let body = req.take_body().into_bytes().await?;
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    req.set_body(body);
    let d = req.data::<Dashboard>().expect("the dashboard attaches its state").clone();
    let who = req.extensions().get::<Session>().map_or_else(|| "(no session)".to_owned(), |s| s.who.clone());
    let path = req.uri().path().to_owned();
    let resp = next.call(req).await?.into_response();
    let (action, target) = described(&path, &form);
    record(&d, &who, &action, &target, &outcome(&resp)).await;
    Ok(resp)
}

/// The action's stable name and what it was on, from the form: `jobs.retry` on `id=01J…`,
/// `jobs.retry.all` on `f_queue=sync f_state=dead`, `account.sync` on `account 42`.
fn described(path: &str, form: &[(String, String)]) -> (String, String) {
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let verb = match (get("all"), get("action")) {
        (Some(all), _) => format!("{all}.all"),
        (None, Some(a)) => a.to_owned(),
        (None, None) => "submit".to_owned(),
    };
    let fields = form.iter().filter(|(k, v)| !NOT_THE_TARGET.contains(&k.as_str()) && !v.is_empty()).map(|(k, v)| format!("{k}={}", clip(v)));
    let fields: Vec<String> = fields.collect();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["jobs", "act"] => (format!("jobs.{verb}"), fields.join(" ")),
        ["accounts", id, "act"] => (format!("account.{verb}"), format!("account {}", clip(id))),
        ["cron", "run"] => ("cron.run".into(), fields.join(" ")),
        ["pauses"] => (verb, fields.join(" ")),
        _ => (format!("{}.{verb}", clip(&segments.join("."))), fields.join(" ")),
    }
}

fn clip(v: &str) -> String {
    if v.chars().count() > 200 { v.chars().take(200).collect::<String>() + "…" } else { v.to_owned() }
}

/// What the answer carried back: the flash of the page it redirects to (`ok: Retried 3 jobs.`,
/// `error: The dashboard is read-only.`), or that it asked for confirmation.
fn outcome(resp: &Response) -> String {
    let location = resp.headers().get(header::LOCATION).and_then(|l| l.to_str().ok()).unwrap_or_default();
    let without_fragment = location.split('#').next().unwrap_or_default();
    let query = without_fragment.split_once('?').map_or("", |(_, q)| q);
    let flash = url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "notice" || k == "error");
    match flash {
        Some((k, msg)) if k == "notice" => format!("ok: {msg}"),
        Some((_, msg)) => format!("error: {msg}"),
        None if resp.status().is_success() => "asked for confirmation".into(),
        None => format!("answered {}", resp.status()),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    before: Option<i64>,
}

/// `GET /dashboard/audit`: newest first, by operator and action.
#[handler]
pub async fn show(req: &Request, d: Data<&Dashboard>, q: Query<AuditQuery>, flash: Query<Flash>) -> Html<String> {
    let mut flash = flash.0;
    let filter = AuditFilter { actor: Some(q.actor.trim().to_owned()), action: Some(q.action.trim().to_owned()) };
    let entries = d.cx.store.audit_entries(&filter, q.before, PAGE + 1).await.unwrap_or_else(|e| {
        tracing::warn!(target: "dashboard", error = %e, "cannot read the audit trail");
        flash.error = Some("The database did not answer; try again.".into());
        vec![]
    });
    let more = entries.len() > PAGE as usize;
    let entries: &[AuditEntry] = &entries[..entries.len().min(PAGE as usize)];
    let body = html! {
        form.filters method="get" action={(BASE) "/audit"} {
            label { "Operator " input type="search" name="actor" value=(q.actor); }
            label { "Action " input type="search" name="action" value=(q.action) placeholder="jobs, pause, sign_in.failed…"; }
            button type="submit" { "Filter" }
            a href={(BASE) "/audit"} { "Clear" }
        }
        table.audit {
            thead { tr { th { "When (UTC)" } th { "Operator" } th { "Action" } th { "On" } th { "Outcome" } } }
            tbody {
                @for e in entries {
                    tr {
                        td { (page::when(e.at)) }
                        td { (e.actor) }
                        td { code { (e.action) } }
                        td { (e.target) }
                        td class=[(!e.outcome.starts_with("ok")).then_some("err")] { (e.outcome) }
                    }
                }
                @if entries.is_empty() { tr { td colspan="5" { "Nothing recorded matches." } } }
            }
        }
        @if more {
            @if let Some(last) = entries.last() {
                a.next href={(BASE) "/audit" (page::query(&[("actor", &q.actor), ("action", &q.action), ("before", &last.id.to_string())]))} { "Older →" }
            }
        }
        p { "Kept " (d.cx.settings.retention.audit.map_or_else(|| "forever".to_owned(), |k| format!("{} days", k.as_secs() / 86_400))) " (RETAIN_AUDIT)." }
    };
    page::shell(req, "Audit", &flash, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn each_form_is_named_by_its_action_and_what_it_acted_on() {
        let ids = form(&[("csrf", "t"), ("action", "retry"), ("id", "01A"), ("id", "01B"), ("back", "/dashboard/jobs")]);
        assert_eq!(described("/jobs/act", &ids), ("jobs.retry".into(), "id=01A id=01B".into()));
        let all = form(&[("csrf", "t"), ("all", "delete"), ("f_queue", "sync"), ("f_state", "dead"), ("f_error", ""), ("confirmed", "3")]);
        assert_eq!(described("/jobs/act", &all), ("jobs.delete.all".into(), "f_queue=sync f_state=dead".into()));
        assert_eq!(described("/accounts/42/act", &form(&[("action", "sync")])), ("account.sync".into(), "account 42".into()));
        let pause = form(&[("action", "pause"), ("target", "sync:tiktok"), ("minutes", "30"), ("reason", "TikTok 500s")]);
        assert_eq!(described("/pauses", &pause), ("pause".into(), "target=sync:tiktok minutes=30 reason=TikTok 500s".into()));
        assert_eq!(described("/cron/run", &form(&[("schedule", "data_sync")])), ("cron.run".into(), "schedule=data_sync".into()));
    }
}
