//! `/dashboard/`: jobs per queue and state, the oldest waiting job, attempts per minute — live —
//! and attempts per day over 90 days (from the roll-ups, drawn once per page load).

use jobs::{
    QUEUES, Timestamp,
    store::{JobState, QueueCounts},
};
use maud::html;
use poem::{
    Request, handler,
    web::{Data, Html, Query},
};

use crate::{
    BASE, Dashboard,
    chart::{self, Chart},
    page::{self, Flash},
};

#[handler]
pub async fn show(req: &Request, d: Data<&Dashboard>, flash: Query<Flash>) -> Html<String> {
    let frame = d.live.current().await;
    let daily = daily_chart(&d).await;
    let live = d.cx.store.live_concurrency().await.unwrap_or_else(|e| {
        tracing::warn!(target: "dashboard", error = %e, "cannot read the live concurrency");
        vec![]
    });
    // Every queue is shown, even when empty.
    let mut names: Vec<String> = QUEUES.iter().map(|q| (*q).to_owned()).collect();
    names.extend(frame.queues.keys().filter(|k| !QUEUES.contains(&k.as_str())).cloned());
    let empty = QueueCounts::default();
    let paused = req.extensions().get::<crate::pauses_panel::InForce>().map(|p| p.0.clone()).unwrap_or_default();
    let body = html! {
        div.live-bar {
            span #live-status { "Live" }
            " · updated " span #live-at { (page::when(frame.at)) } " UTC"
            button #live-toggle type="button" { "Pause" }
        }
        @if let Some(e) = &frame.error { p.error #live-error role="alert" { (e) } } @else { p.error #live-error hidden {} }
        table.counts {
            thead { tr {
                th { "Queue" }
                @for s in JobState::ALL { th { (s.as_str()) } }
                th { "Oldest pending" }
            } }
            tbody {
                @for q in &names {
                    @let c = frame.queues.get(q).unwrap_or(&empty);
                    tr {
                        th {
                            a href={(BASE) "/jobs" (page::query(&[("queue", q)]))} { (q) }
                            @if let Some(state) = jobs::pauses::queue_state(&paused, q, frame.at) { " " span.state.paused { (state) } }
                        }
                        @for s in JobState::ALL {
                            td.num {
                                a data-cell={(q) ":" (s.as_str())} href={(BASE) "/jobs" (page::query(&[("queue", q), ("state", s.as_str())]))} {
                                    @if c.estimated.contains(&s.as_str()) { "≈ " }
                                    (c.counts.get(s.as_str()).copied().unwrap_or(0))
                                }
                            }
                        }
                        td.num data-oldest=(q) { (oldest(c, frame.at)) }
                    }
                }
            }
        }
        @if frame.queues.values().any(|c| !c.estimated.is_empty()) {
            p.legend #estimated-note { "≈: estimated from the table's statistics (a table this big is not counted row by row); every other count is exact." }
        }
        (crate::pauses_panel::panel(req, &d))
        (crate::pauses_panel::concurrency_panel(req, &d, &live))
        h2 { "Finished attempts per minute" }
        div #throughput { (page::raw(frame.chart.clone())) }
        p.legend { span.swatch.ok {} " succeeded " span.swatch.bad {} " failed (retrying or dead)" }
        h2 { "Finished attempts per day" }
        div #daily { (page::raw(daily)) }
    };
    page::shell(req, "Overview", &flash, body)
}

/// Attempts per day, the last 90 days (an empty chart, logged, when the database fails).
async fn daily_chart(d: &Dashboard) -> String {
    let now = Timestamp::now();
    let days = crate::health_page::DAYS;
    let since = Timestamp(now.day_start().millis() - (days - 1) * DAY_MS);
    let rows = d.cx.store.attempts_per_day(since).await.unwrap_or_else(|e| {
        tracing::warn!(target: "dashboard", error = %e, "cannot read attempts per day");
        vec![]
    });
    let columns = crate::health_page::day_columns(since, |at| {
        let (ok, failed) = rows.iter().find(|(day, ..)| *day == at).map_or((0, 0), |(_, ok, failed)| (*ok, *failed));
        (vec![ok as f64, failed as f64], format!("{}: {ok} succeeded, {failed} failed", at.to_datetime().format("%b %d")))
    });
    chart::draw(&Chart {
        columns, series: &["ok", "bad"], target: None, max: None,
        label: "Finished attempts per day, last 90 days", unit: "attempts a day", ends: (format!("{days} days ago"), "today".into()),
    })
}

const DAY_MS: i64 = 86_400_000;

fn oldest(c: &QueueCounts, now: Timestamp) -> String {
    c.oldest_pending.map_or_else(|| "—".into(), |t| page::span_ms(now.millis() - t.millis()))
}
