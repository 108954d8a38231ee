//! `/dashboard/health`: the operating targets and where they stand, over 90 days — token
//! refresh success rate (target above 95 %, alert below 90 % two days running), nightly sync
//! duration against the pace-bound expectation, 429s per hour (ours and the platforms'),
//! accounts that became inactive per week, and each platform's pacing gate. The figures come
//! from roll-ups that outlive the raw records (see `jobs::store::rollups`).

use std::time::Duration;

use jobs::{Platform, Timestamp, store::DayOutcomes, sweeps};
use maud::{Markup, html};
use poem::{
    Request, handler,
    web::{Data, Html, Query},
};

use crate::{
    Dashboard,
    chart::{self, Chart, Column},
    page::{self, Flash},
};

pub const DAYS: i64 = 90;
const WEEK_MS: i64 = 7 * DAY_MS;
const DAY_MS: i64 = 86_400_000;
pub const TARGET_RATE: f64 = 95.0;
pub const ALERT_RATE: f64 = 90.0;

/// Success rate of a day's refreshes that ended (succeeded or dead), in percent.
pub fn success_rate(d: &DayOutcomes) -> Option<f64> {
    let ended = d.succeeded + d.dead;
    (ended > 0).then(|| d.succeeded as f64 * 100.0 / ended as f64)
}

/// Whether the last two days with refreshes were both below the alert line.
pub fn refresh_alert(days: &[DayOutcomes]) -> bool {
    let rates: Vec<f64> = days.iter().filter_map(success_rate).collect();
    rates.len() >= 2 && rates[rates.len() - 2..].iter().all(|r| *r < ALERT_RATE)
}

#[handler]
pub async fn show(req: &Request, d: Data<&Dashboard>, flash: Query<Flash>) -> Html<String> {
    let mut flash = flash.0;
    let now = Timestamp::now();
    let today = now.day_start();
    let since = Timestamp(today.millis() - (DAYS - 1) * DAY_MS);
    let store = &d.cx.store;
    let figures = tokio::try_join!(
        store.outcomes_per_day(jobs::refresh::KIND, since),
        store.nightly_syncs(sweeps::SYNC_SWEEP, since),
        store.counter_hours(jobs::store::API_429_COUNTER, since),
        store.platform_429s_per_hour(since),
        store.counter_hours(jobs::store::INACTIVE_COUNTER, since.week_start()),
        store.sync_backlog(),
        store.pacing_next_at(Platform::Instagram.as_str()),
        store.pacing_next_at(Platform::Tiktok.as_str()),
    );
    let body = match figures {
        Ok((refresh, nightly, ours, theirs, inactive, backlog, ig_next, tt_next)) => html! {
            (refresh_section(&refresh, since))
            (nightly_section(&d, &nightly, since))
            (limits_section(&ours, &theirs, since))
            (inactive_section(&per_week(&inactive), since.week_start(), today))
            (pacing_section(&d, &backlog, [(Platform::Instagram, ig_next), (Platform::Tiktok, tt_next)], now))
        },
        Err(e) => {
            tracing::warn!(target: "dashboard", error = %e, "cannot read the health figures");
            flash.error = Some("The database did not answer; try again.".into());
            html! {}
        }
    };
    page::shell(req, "Health", &flash, body)
}

pub(crate) fn day_columns(since: Timestamp, value: impl Fn(Timestamp) -> (Vec<f64>, String)) -> Vec<Column> {
    (0..DAYS)
        .map(|i| {
            let at = Timestamp(since.millis() + i * DAY_MS);
            let (values, title) = value(at);
            Column { values, title }
        })
        .collect()
}

fn day(t: Timestamp) -> String {
    t.to_datetime().format("%b %d").to_string()
}

fn refresh_section(days: &[DayOutcomes], since: Timestamp) -> Markup {
    let alert = refresh_alert(days);
    let latest = days.iter().rev().find_map(|d| success_rate(d).map(|r| (d.day, r)));
    let columns = day_columns(since, |at| match days.iter().find(|d| d.day == at) {
        Some(d) => {
            let rate = success_rate(d);
            let title = format!("{}: {} succeeded, {} dead, {} retried{}", day(at), d.succeeded, d.dead, d.retrying,
                rate.map(|r| format!(" ({r:.1} %)")).unwrap_or_default());
            (vec![rate.unwrap_or(0.0)], title)
        }
        None => (vec![0.0], format!("{}: no refresh ended", day(at))),
    });
    html! {
        section #refresh-health {
            h2 { "Token refresh success rate" }
            @if alert {
                p.error role="alert" { "Below " (ALERT_RATE) " % two days running: look at the refresh errors on the accounts page." }
            }
            p {
                "Target above " (TARGET_RATE) " %. "
                @match latest {
                    Some((at, r)) => { "Latest (" (day(at)) "): " strong class=(if r >= TARGET_RATE { "ok" } else { "err" }) { (format!("{r:.1} %")) } }
                    None => { "No refresh has ended in " (DAYS) " days." }
                }
            }
            (page::raw(chart::draw(&Chart {
                columns, series: &["ok"], target: Some(TARGET_RATE), max: Some(100.0),
                label: "Token refresh success rate per day, %", unit: "%", ends: (day(since), "today".into()),
            })))
        }
    }
}

/// The pace-bound duration of a nightly run: each platform's syncs one spacing apart.
fn expected_ms(d: &Dashboard, instagram: i64, tiktok: i64) -> i64 {
    let s = &d.cx.settings;
    let ig = s.spacing(Platform::Instagram).as_millis() as i64 * instagram;
    let tt = s.spacing(Platform::Tiktok).as_millis() as i64 * tiktok;
    ig.max(tt)
}

/// How long a nightly run took (ms), and whether that is past its pace-bound expectation.
fn nightly_took(d: &Dashboard, n: &jobs::store::NightlySync) -> (Option<i64>, i64, bool) {
    let expected = expected_ms(d, n.instagram_syncs, n.tiktok_syncs);
    let took = n.last_finished.map(|f| f.millis() - n.claimed_at.millis());
    let over = took.is_some_and(|t| t as f64 > expected as f64 * 1.1 + 60_000.0);
    (took, expected, over)
}

fn nightly_section(d: &Dashboard, nightly: &[jobs::store::NightlySync], since: Timestamp) -> Markup {
    // One column per day: the duration in minutes, red when over the expectation.
    let columns = day_columns(since, |at| {
        let run = nightly.iter().rev().find(|n| n.fire_at.millis() - n.fire_at.millis().rem_euclid(DAY_MS) == at.millis());
        match run.map(|n| (n, nightly_took(d, n))) {
            Some((n, (Some(took), expected, over))) => {
                let minutes = took as f64 / 60_000.0;
                let title = format!("{}: took {}, expected {} ({} syncs enqueued)", day(at), page::span_ms(took), page::span_ms(expected), n.jobs_enqueued.unwrap_or(0));
                (if over { vec![0.0, minutes] } else { vec![minutes, 0.0] }, title)
            }
            _ => (vec![0.0, 0.0], format!("{}: no nightly sync", day(at))),
        }
    });
    html! {
        section #nightly-health {
            h2 { "Nightly sync duration" }
            p { "Counted: the syncs each sweep enqueued (not those deduplicated into a sync already waiting, nor any requested later). Took: from the sweep to the end of the last of them. Expected: each platform's syncs one pacing spacing apart. A run more than 10 % (and a minute) over is flagged." }
            (page::raw(chart::draw(&Chart {
                columns, series: &["ok", "bad"], target: None, max: None,
                label: "Nightly sync duration per day, minutes (red: over the expectation)", unit: "minutes", ends: (day(since), "today".into()),
            })))
            table {
                thead { tr { th { "Fired" } th.num { "Syncs enqueued" } th.num { "Succeeded (Instagram / TikTok)" } th.num { "Took" } th.num { "Expected" } th { "" } } }
                tbody {
                    @for n in nightly.iter().rev() {
                        @let (took, expected, over) = nightly_took(d, n);
                        tr {
                            td { (page::when(n.fire_at)) @if n.claimed_at.millis() - n.fire_at.millis() > 60_000 { " " small { "(ran " (page::when(n.claimed_at)) ")" } } }
                            td.num { (n.jobs_enqueued.unwrap_or(0)) }
                            td.num { (n.instagram_syncs) " / " (n.tiktok_syncs) }
                            td.num { (took.map(page::span_ms).unwrap_or_else(|| "—".into())) }
                            td.num { (page::span_ms(expected)) }
                            td class=(if over { "err" } else { "ok" }) { (if over { "over" } else { "ok" }) }
                        }
                    }
                    @if nightly.is_empty() { tr { td colspan="6" { "No nightly sync in " (DAYS) " days." } } }
                }
            }
        }
    }
}

fn limits_section(ours: &[(Timestamp, i64)], theirs: &[(Timestamp, i64)], since: Timestamp) -> Markup {
    let hours = DAYS * 24;
    let total = |v: &[(Timestamp, i64)]| v.iter().map(|(_, n)| n).sum::<i64>();
    let columns = (0..hours)
        .map(|i| {
            let at = Timestamp(since.millis() + i * 3_600_000);
            let get = |v: &[(Timestamp, i64)]| v.iter().find(|(t, _)| *t == at).map_or(0, |(_, n)| *n);
            let (a, b) = (get(ours), get(theirs));
            Column { values: vec![a as f64, b as f64], title: format!("{} UTC: {a} ours, {b} the platforms'", at.to_datetime().format("%b %d %H:00")) }
        })
        .collect();
    html! {
        section #limits-health {
            h2 { "429s per hour" }
            p { (total(ours)) " answered by this API, " (total(theirs)) " from the platforms, in " (DAYS) " days." }
            (page::raw(chart::draw(&Chart {
                columns, series: &["warn", "bad"], target: None, max: None,
                label: "429 answers per hour: ours and the platforms'", unit: "429s an hour", ends: (day(since), "now".into()),
            })))
            p.legend { span.swatch.warn {} " ours (rate limits) " span.swatch.bad {} " the platforms'" }
        }
    }
}

/// Hourly counts summed per week: (Monday, count), in order.
pub fn per_week(hours: &[(Timestamp, i64)]) -> Vec<(Timestamp, i64)> {
    let mut weeks: Vec<(Timestamp, i64)> = vec![];
    for (hour, n) in hours {
        let w = hour.week_start();
        match weeks.last_mut() {
            Some((last, total)) if *last == w => *total += n,
            _ => weeks.push((w, *n)),
        }
    }
    weeks
}

fn inactive_section(weeks: &[(Timestamp, i64)], first: Timestamp, today: Timestamp) -> Markup {
    let count = (today.millis() - first.millis()) / WEEK_MS + 1;
    let columns = (0..count)
        .map(|i| {
            let at = Timestamp(first.millis() + i * WEEK_MS);
            let n = weeks.iter().find(|(w, _)| *w == at).map_or(0, |(_, n)| *n);
            Column { values: vec![n as f64], title: format!("week of {}: {n} became inactive", day(at)) }
        })
        .collect();
    html! {
        section #inactive-health {
            h2 { "Accounts that became inactive per week" }
            p {
                "Accounts that left active (re-authorisation required, revoked at the platform, or disconnected), counted when it happened. "
                a href={(crate::BASE) "/accounts?report=week"} { "Those of the last 7 days, by account" }
            }
            (page::raw(chart::draw(&Chart {
                columns, series: &["bad"], target: None, max: None,
                label: "Accounts that became inactive per week", unit: "accounts a week", ends: (format!("week of {}", day(first)), "this week".into()),
            })))
        }
    }
}

fn pacing_section(d: &Dashboard, backlog: &[(Platform, i64)], next: [(Platform, Option<Timestamp>); 2], now: Timestamp) -> Markup {
    html! {
        section #pacing-health {
            h2 { "Pacing gates" }
            table {
                thead { tr { th { "Platform" } th.num { "Spacing" } th { "Next free slot" } th.num { "Syncs waiting" } th.num { "Drains in" } } }
                tbody {
                    @for (platform, at) in next {
                        @let spacing: Duration = d.cx.settings.spacing(platform);
                        @let waiting = backlog.iter().find(|(p, _)| *p == platform).map_or(0, |(_, n)| *n);
                        tr {
                            td { (platform.as_str()) }
                            td.num { (page::span_ms(spacing.as_millis() as i64)) }
                            td { (at.filter(|t| *t > now).map(|t| page::relative(t, now)).unwrap_or_else(|| "free now".into())) }
                            td.num { (waiting) }
                            td.num { (page::span_ms(spacing.as_millis() as i64 * waiting)) }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(succeeded: i64, dead: i64) -> DayOutcomes {
        DayOutcomes { succeeded, dead, ..DayOutcomes::default() }
    }

    #[test]
    fn weeks_start_on_monday() {
        let monday = Timestamp(1_764_547_200_000); // 2025-12-01 00:00 UTC
        assert_eq!(monday.to_datetime().format("%a").to_string(), "Mon");
        for offset in [0, 1, 86_400_000 * 6 + 86_399_999] {
            assert_eq!(Timestamp(monday.millis() + offset).week_start(), monday);
        }
        assert_eq!(Timestamp(monday.millis() - 1).week_start().millis(), monday.millis() - WEEK_MS);
        let hours = [(Timestamp(monday.millis() - 3_600_000), 2), (monday, 1), (Timestamp(monday.millis() + 3_600_000), 4)];
        assert_eq!(per_week(&hours), vec![(Timestamp(monday.millis() - WEEK_MS), 2), (monday, 5)]);
    }

    #[test]
    fn the_alert_needs_two_days_below_ninety() {
        assert!(!refresh_alert(&[day(85, 15)]), "one day is not two");
        assert!(refresh_alert(&[day(99, 1), day(85, 15), day(80, 20)]));
        assert!(!refresh_alert(&[day(85, 15), day(95, 5)]), "recovered");
        assert!(!refresh_alert(&[day(0, 0), day(0, 0)]), "no refresh ended");
        assert_eq!(success_rate(&day(19, 1)), Some(95.0));
    }
}
