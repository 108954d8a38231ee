//! `/dashboard/cron`: each schedule (the nightly sweeps, the pruner) in plain words, its next
//! firings, its last firings with their outcome, and "run now"; then how long history is kept
//! and how large each table is.

use std::time::Duration;

use jobs::{Timestamp, schedule};
use maud::html;
use poem::{
    Request, Response, handler,
    web::{Data, Html, Query},
};

use crate::{
    BASE, Dashboard,
    page::{self, Flash},
    session::{Session, redirect},
};

/// Firings listed per schedule.
const LAST: u32 = 10;
/// `claimed_by` of a firing run by hand from here.
const BY_HAND: &str = "dashboard (run now)";

#[handler]
pub async fn show(req: &Request, d: Data<&Dashboard>, flash: Query<Flash>) -> Html<String> {
    let mut flash = flash.0;
    let now = Timestamp::now();
    let tz = d.config.timezone;
    let mut sections = vec![];
    for s in &d.config.schedules {
        let next = schedule::parse(&s.expr).map(|sch| schedule::next(&sch, tz, now.to_datetime(), 3));
        let runs = match d.cx.store.cron_runs(s.name, LAST).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(target: "dashboard", error = %e, "cannot read cron runs");
                flash.error = Some("The database did not answer; the firings are missing.".into());
                vec![]
            }
        };
        sections.push((s, next, runs));
    }
    let sizes = match d.cx.store.table_sizes().await {
        Ok(sizes) => sizes,
        Err(e) => {
            tracing::warn!(target: "dashboard", error = %e, "cannot read table sizes");
            None
        }
    };
    let pauses = req.extensions().get::<crate::pauses_panel::InForce>().map(|p| p.0.clone()).unwrap_or_default();
    let paused = |name: &str| pauses.iter().find(|p| matches!(p.target(), Some(jobs::pauses::Target::Schedule(n)) if n == name));
    let body = html! {
        @for (s, next, runs) in &sections {
            section.schedule data-schedule=(s.name) {
                h2 { (s.name) @if paused(s.name).is_some() { " " span.state.paused { "paused" } } }
                @if let Some(p) = paused(s.name) { p.paused-note { "Paused " (p.describe()) ": its firings are recorded as skipped until resumed (on the overview)." } }
                p { strong { (schedule::describe(&s.expr, tz)) } " · " code { (s.expr) } }
                @match next {
                    Ok(times) => p { "Next: " (times.iter().map(|t| format!("{} UTC", page::when(Timestamp::from(*t)))).collect::<Vec<_>>().join(" · ")) },
                    Err(e) => p.error { (e) },
                }
                @if !d.config.read_only {
                    form method="post" action={(BASE) "/cron/run"} {
                        (page::csrf_field(req))
                        input type="hidden" name="schedule" value=(s.name);
                        button type="submit" { "Run now" }
                    }
                }
                table.firings {
                    thead { tr { th { "Fired for" } th { "By" } th { "Took" } th { "Result" } th { "Outcome" } } }
                    tbody {
                        @for r in runs {
                            tr {
                                td { (page::when(r.fire_at)) }
                                td { code { (r.claimed_by) } }
                                td.num { (r.finished_at.map(|f| page::span_ms(f.millis() - r.claimed_at.millis())).unwrap_or_else(|| "running".into())) }
                                td { (result_words(r.jobs_enqueued.map(|n| n as u64), r.detail.as_deref())) }
                                td class=(if r.outcome.as_deref() == Some("ok") { "ok" } else { "err" }) { (r.outcome.as_deref().unwrap_or("…")) }
                            }
                        }
                        @if runs.is_empty() { tr { td colspan="5" { "Never fired." } } }
                    }
                }
            }
        }
        (retention_section(&d.cx.settings.retention, sizes.as_deref()))
    };
    page::shell(req, "Cron", &flash, body)
}

/// The retentions in force (`RETAIN_*`) and the tables' sizes.
fn retention_section(keep: &jobs::retention::Retention, sizes: Option<&[jobs::store::TableSize]>) -> maud::Markup {
    let kept = |d: Option<Duration>| match d {
        None => "forever".to_owned(),
        Some(d) if d.as_secs() % 86_400 == 0 => format!("{} days", d.as_secs() / 86_400),
        Some(d) => format!("{} hours", d.as_secs() / 3_600),
    };
    let rows = [
        ("Succeeded jobs", "RETAIN_DONE_JOBS", keep.done_jobs),
        ("Dead and cancelled jobs", "RETAIN_DEAD_JOBS", keep.dead_jobs),
        ("Attempt records", "RETAIN_JOB_RUNS", keep.job_runs),
        ("Every snapshot", "RETAIN_SNAPSHOTS", keep.snapshots),
        ("One snapshot a day per account", "RETAIN_DAILY_SNAPSHOTS", keep.daily_snapshots),
        ("Delivered notifications", "RETAIN_NOTIFICATIONS", keep.notifications),
        ("Firings", "RETAIN_CRON_RUNS", keep.cron_runs),
        ("Silent worker processes", "RETAIN_WORKERS", keep.workers),
        ("Ops' actions and sign-ins (the audit trail)", "RETAIN_AUDIT", keep.audit),
    ];
    html! {
        section.retention {
            h2 { "Retention" }
            p { "The " code { (jobs::retention::PRUNE) } " firings above delete what is older; pending, running and retrying jobs are never deleted." }
            table.retention {
                thead { tr { th { "History" } th { "Kept" } th { "Setting" } } }
                tbody { @for (what, setting, d) in rows { tr { td { (what) } td { (kept(d)) } td { code { (setting) } } } } }
            }
            h2 { "Table sizes" }
            @match sizes {
                Some(sizes) => table.sizes {
                    thead { tr { th { "Table" } th { "Size (indexes included)" } th { "Rows (estimate)" } } }
                    tbody {
                        @for t in sizes {
                            tr { td { code { (t.table) } } td.num { (bytes(t.bytes)) } td.num { (t.rows_estimate.map(|n| n.to_string()).unwrap_or_default()) } }
                        }
                    }
                },
                None => p { "This database does not report table sizes." },
            }
        }
    }
}

/// `n` bytes in words: "12.3 MB".
fn bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let (mut v, mut unit) = (n as f64, 0);
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

/// Runs a schedule's sweep now, recorded in `cron_runs` like a firing (by hand), so its outcome
/// shows beside the nightly ones.
#[handler]
pub async fn run_now(req: &Request, d: Data<&Dashboard>, body: poem::Body) -> Response {
    let bytes = body.into_bytes().await.unwrap_or_default();
    let form: std::collections::HashMap<String, String> = url::form_urlencoded::parse(&bytes).into_owned().collect();
    let back = format!("{BASE}/cron");
    let fail = |msg: &str| redirect(&page::with_flash(&back, "error", msg));
    let ok_session = req.extensions().get::<Session>().is_some_and(|s| s.csrf_ok(form.get("csrf").map_or("", String::as_str)));
    if !ok_session {
        return fail("This form expired (security token mismatch); reload the page and try again.");
    }
    if d.config.read_only {
        return fail("The dashboard is read-only.");
    }
    let Some(s) = d.config.schedules.iter().find(|s| Some(s.name) == form.get("schedule").map(String::as_str)) else {
        return fail("Unknown schedule.");
    };
    let cx = &d.cx;
    let at = cx.now();
    match cx.store.claim_cron_run(s.name, at, BY_HAND, at).await {
        Ok(true) => {}
        Ok(false) => return fail("It was run this very millisecond already."),
        Err(e) => {
            tracing::warn!(target: "dashboard", error = %e, "cannot record a run by hand");
            return fail("The database did not answer; nothing was run.");
        }
    }
    tracing::info!(target: "dashboard", schedule = s.name, "run by hand");
    match jobs::sweeps::run_claimed(cx, s.name, at, d.config.sweep_chunk).await {
        Ok(f) => {
            tracing::info!(target: "dashboard", schedule = s.name, jobs = f.jobs, detail = f.detail, "run by hand finished");
            redirect(&page::with_flash(&back, "notice", &format!("{} ran: {}.", s.name, result_words(f.jobs, f.detail.as_deref()))))
        }
        Err(outcome) => fail(&format!("{} {outcome}", s.name)),
    }
}

/// A firing's result in words: the jobs a sweep enqueued, the rows the pruner removed.
fn result_words(jobs: Option<u64>, detail: Option<&str>) -> String {
    if let Some(n) = jobs {
        return format!("{n} jobs enqueued");
    }
    match detail.and_then(|d| serde_json::from_str::<jobs::retention::PruneReport>(d).ok()) {
        Some(r) if r.total() == 0 => "nothing past its retention".into(),
        Some(r) => "removed ".to_owned() + &r.removed.iter().filter(|(_, n)| **n > 0).map(|(t, n)| format!("{t} {n}")).collect::<Vec<_>>().join(", "),
        None => String::new(),
    }
}
