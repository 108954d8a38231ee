//! `/dashboard/workers`: every worker process heard from in the last day — its queues and
//! their concurrency, start, last heartbeat, whether it went silent, and the jobs it holds.

use jobs::Timestamp;
use maud::html;
use poem::{
    Request, handler,
    web::{Data, Html, Query},
};

use crate::{
    BASE, Dashboard,
    page::{self, Flash},
};

#[handler]
pub async fn show(req: &Request, d: Data<&Dashboard>, flash: Query<Flash>) -> Html<String> {
    let mut flash = flash.0;
    let now = Timestamp::now();
    let store = &d.cx.store;
    let processes = store.worker_processes(now).await.unwrap_or_else(|e| {
        tracing::warn!(target: "dashboard", error = %e, "cannot list worker processes");
        flash.error = Some("The database did not answer; the list is empty.".into());
        vec![]
    });
    let mut rows = vec![];
    for p in processes {
        let held = if p.stopped_at.is_none() { store.jobs_held_by(&p.name).await.unwrap_or_default() } else { vec![] };
        rows.push((p, held));
    }
    let live = rows.iter().filter(|(p, _)| p.stopped_at.is_none() && !p.is_stale(now)).count();
    // The configured concurrency each process reports, and what ops set live over it.
    let set_live = store.live_concurrency().await.unwrap_or_default();
    let body = html! {
        p { (live) " live of " (rows.len()) " processes heard from in the last day." }
        @if !set_live.is_empty() {
            p.live-concurrency {
                "Set live over the configured concurrency below: "
                (set_live.iter().map(|c| format!("{} {} per process (by {})", c.queue, c.concurrency, c.set_by)).collect::<Vec<_>>().join(", "))
                "."
            }
        }
        table.workers {
            thead { tr {
                th { "Process" } th { "Host / pid" } th { "Queues (configured concurrency)" } th { "Started" }
                th { "Last heartbeat" } th { "Status" } th { "Running jobs" }
            } }
            tbody {
                @for (p, held) in &rows {
                    @let status = if p.stopped_at.is_some() { "stopped" } else if p.is_stale(now) { "stale" } else { "live" };
                    tr data-status=(status) {
                        td { code { (p.name) } }
                        td { (p.host) " / " (p.pid) }
                        td { (p.queue_list().iter().map(|q| format!("{} ({})", q.queue, q.concurrency)).collect::<Vec<_>>().join(", ")) }
                        td title=(page::when(p.started_at)) { (page::relative(p.started_at, now)) }
                        td title=(page::when(p.last_seen)) { (page::relative(p.last_seen, now)) }
                        td { span class={"status " (status)} { (status) } }
                        td {
                            @if held.is_empty() { "—" }
                            @for (id, queue, since) in held {
                                a href={(BASE) "/jobs/" (id)} { (queue) } " "
                                small { (since.map(|t| page::relative(t, now)).unwrap_or_default()) } br;
                            }
                        }
                    }
                }
                @if rows.is_empty() { tr { td colspan="7" { "No worker process has reported yet." } } }
            }
        }
        p.hint { "A process is stale once it has been silent for longer than its jobs are left to it; they then run elsewhere." }
    };
    page::shell(req, "Workers", &flash, body)
}
