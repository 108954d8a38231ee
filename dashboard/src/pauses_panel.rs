//! Pauses on the dashboard: the banner every page shows while something is paused, the
//! overview's panel to pause and resume (a queue, one platform's jobs of a queue, or a schedule,
//! with a reason and a length), and its form's handler. The same pauses as `socialsync pause`
//! ([`jobs::pauses`]). Beside it, the queues' concurrency set live (`socialsync concurrency`).

use std::{sync::Arc, time::Duration};

use jobs::{
    Platform, QUEUES, Timestamp,
    pauses::{PLATFORM_QUEUES, Pause, SCHEDULES, Target},
    store::{LiveConcurrency, MAX_LIVE_CONCURRENCY},
};
use maud::{Markup, html};
use poem::{Endpoint, IntoResponse, Request, Response, handler, web::Data};

use crate::{
    BASE, Dashboard,
    page,
    session::redirect,
};

/// The pauses in force when the page was built (in the request's extensions).
#[derive(Clone, Debug, Default)]
pub struct InForce(pub Vec<Pause>);

/// In front of every page: reads the pauses for its banner (none shown if the read fails).
pub async fn read<E: Endpoint>(next: Arc<E>, mut req: Request) -> poem::Result<Response> {
    let d = req.data::<Dashboard>().expect("the dashboard attaches its state").clone();
    let pauses = d.cx.store.pauses(Timestamp::now()).await.unwrap_or_else(|e| {
        tracing::warn!(target: "dashboard", error = %e, "cannot read the pauses");
        vec![]
    });
    req.extensions_mut().insert(InForce(pauses));
    next.call(req).await.map(IntoResponse::into_response)
}

fn what(p: &Pause) -> String {
    p.target().map_or_else(|| p.scope.clone(), |t| t.to_string())
}

/// The banner: one line per pause in force.
pub fn banner(req: &Request) -> Markup {
    let pauses = req.extensions().get::<InForce>().map(|p| p.0.as_slice()).unwrap_or_default();
    html! {
        @if !pauses.is_empty() {
            div.paused role="alert" {
                @for p in pauses {
                    p { strong { "Paused: " (what(p)) } ", " (p.describe()) ". " a href={(BASE) "/#pauses"} { "Resume on the overview" } }
                }
            }
        }
    }
}

/// How long a pause from the dashboard lasts: the form's choices (minutes; 0: until resumed).
const LENGTHS: [(u64, &str); 5] = [(15, "15 minutes"), (30, "30 minutes"), (60, "1 hour"), (240, "4 hours"), (0, "until resumed")];

/// The overview's panel: the pauses in force with their Resume button, and the Pause form.
pub fn panel(req: &Request, d: &Dashboard) -> Markup {
    let pauses = req.extensions().get::<InForce>().map(|p| p.0.as_slice()).unwrap_or_default();
    let editable = !d.config.read_only;
    html! {
        section #pauses {
            h2 { "Pauses" }
            @if pauses.is_empty() { p { "Nothing is paused." } }
            @for p in pauses {
                form.pause method="post" action={(BASE) "/pauses"} data-scope=(p.scope) {
                    (page::csrf_field(req))
                    input type="hidden" name="target" value=(p.target().map_or_else(String::new, Target::key));
                    span { strong { (what(p)) } " — paused " (p.describe()) }
                    @if editable { " " button type="submit" name="action" value="resume" { "Resume" } }
                }
            }
            @if editable {
                form.pause-new method="post" action={(BASE) "/pauses"} {
                    (page::csrf_field(req))
                    label { "Pause " select name="target" {
                        optgroup label="Queues (claims stop; running attempts finish)" { @for q in QUEUES { option value=(q) { (q) } } }
                        optgroup label="One platform's jobs of a queue" {
                            @for q in PLATFORM_QUEUES { @for p in Platform::ALL { option value={(q) ":" (p)} { (q) " for " (p) } } }
                        }
                        optgroup label="Schedules (firings are skipped)" { @for s in SCHEDULES { option value=(s) { (s) } } }
                    } }
                    " " label { "for " select name="minutes" { @for (v, words) in LENGTHS { option value=(v) { (words) } } } }
                    " " label { "because " input type="text" name="reason" required maxlength="200" placeholder="TikTok returns 500s"; }
                    " " button type="submit" name="action" value="pause" { "Pause" }
                }
            }
        }
    }
}

/// `POST /dashboard/pauses`: pause or resume one target, back to the overview with the outcome.
#[handler]
pub async fn act(req: &Request, d: Data<&Dashboard>, body: poem::Body) -> Response {
    let back = format!("{BASE}/");
    let done = |key: &str, msg: &str| redirect(&format!("{}#pauses", page::with_flash(&back, key, msg)));
    let (form, session) = match page::action_form(req, &d, body).await {
        Ok(f) => f,
        Err(refused) => return done("error", refused),
    };
    let field = |k: &str| form.get(k);
    let Ok(target) = Target::parse(field("target")) else { return done("error", "Choose a queue, a platform's jobs or a schedule to pause.") };
    let store = &d.cx.store;
    let by = &format!("{} (dashboard)", session.who);
    match field("action") {
        "pause" => {
            let reason = field("reason");
            if reason.is_empty() || reason.chars().count() > 200 {
                return done("error", "Say why (up to 200 characters): whoever sees the pause reads it.");
            }
            let Some(minutes) = LENGTHS.iter().map(|(m, _)| *m).find(|m| m.to_string() == field("minutes")) else {
                return done("error", "Choose how long the pause lasts.");
            };
            let lasting = (minutes > 0).then(|| Duration::from_secs(minutes * 60));
            let pause = Pause::new(target, by, reason, Timestamp::now(), lasting);
            match store.pause(&pause).await {
                Ok(()) => {
                    tracing::warn!(target: "dashboard", scope = %pause.scope, paused_by = %by, reason, "paused from the dashboard");
                    done("notice", &format!("Paused {target}: workers stop starting its work within about a second."))
                }
                Err(e) => {
                    tracing::warn!(target: "dashboard", error = %e, "cannot pause");
                    done("error", "The database did not answer; nothing was paused.")
                }
            }
        }
        "resume" => match store.resume(&target.scope()).await {
            Ok(Some(_)) => {
                tracing::warn!(target: "dashboard", scope = %target.scope(), resumed_by = %by, "resumed from the dashboard");
                done("notice", &format!("Resumed {target}."))
            }
            Ok(None) => done("notice", &format!("{target} was not paused.")),
            Err(e) => {
                tracing::warn!(target: "dashboard", error = %e, "cannot resume");
                done("error", "The database did not answer; nothing was resumed.")
            }
        },
        _ => done("error", "Unknown action."),
    }
}

/// The overview's panel of live concurrency: each queue set live, with **Reset**, and a form
/// to set one.
pub fn concurrency_panel(req: &Request, d: &Dashboard, live: &[LiveConcurrency]) -> Markup {
    let editable = !d.config.read_only;
    html! {
        section #concurrency {
            h2 { "Concurrency" }
            @if live.is_empty() { p { "Every worker process runs each queue at its configured concurrency." } }
            @for c in live {
                form.concurrency method="post" action={(BASE) "/concurrency"} data-queue=(c.queue) {
                    (page::csrf_field(req))
                    input type="hidden" name="queue" value=(c.queue);
                    span { strong { (c.queue) } ": " (c.concurrency) " attempts at once per worker process, set by " (c.set_by) " at " (page::when(c.set_at)) " UTC" }
                    @if editable { " " button type="submit" name="action" value="reset" { "Reset" } }
                }
            }
            @if editable {
                form.concurrency-new method="post" action={(BASE) "/concurrency"} {
                    (page::csrf_field(req))
                    label { "Run " select name="queue" { @for q in QUEUES { option value=(q) { (q) } } } }
                    " " label { "at " input type="number" name="concurrency" min="1" max=(MAX_LIVE_CONCURRENCY) required value="1"; " attempts at once per worker process" }
                    " " button type="submit" name="action" value="set" { "Set" }
                }
            }
        }
    }
}

/// `POST /dashboard/concurrency`: set or reset one queue's live concurrency.
#[handler]
pub async fn set_concurrency(req: &Request, d: Data<&Dashboard>, body: poem::Body) -> Response {
    let back = format!("{BASE}/");
    let done = |key: &str, msg: &str| redirect(&format!("{}#concurrency", page::with_flash(&back, key, msg)));
    let (form, session) = match page::action_form(req, &d, body).await {
        Ok(f) => f,
        Err(refused) => return done("error", refused),
    };
    let field = |k: &str| form.get(k);
    let Some(queue) = QUEUES.iter().find(|q| **q == field("queue")) else { return done("error", "Choose a queue.") };
    let store = &d.cx.store;
    let result = match field("action") {
        "set" => {
            let Some(n) = field("concurrency").parse::<u32>().ok().filter(|n| (1..=MAX_LIVE_CONCURRENCY).contains(n)) else {
                return done("error", &format!("Give 1 to {MAX_LIVE_CONCURRENCY} attempts at once (to stop a queue, pause it)."));
            };
            let live = LiveConcurrency { queue: (*queue).to_owned(), concurrency: n as i32, set_by: format!("{} (dashboard)", session.who), set_at: Timestamp::now() };
            store.set_concurrency(&live).await.map(|()| format!("The {queue} queue runs {n} attempts at once per worker process; workers apply it within about a second."))
        }
        "reset" => store.reset_concurrency(queue).await.map(|_| format!("The {queue} queue is back to each process's configured concurrency.")),
        _ => return done("error", "Unknown action."),
    };
    match result {
        Ok(msg) => {
            tracing::warn!(target: "dashboard", queue, by = %session.who, "{msg}");
            done("notice", &msg)
        }
        Err(e) => {
            tracing::warn!(target: "dashboard", error = %e, "cannot change a queue's concurrency");
            done("error", "The database did not answer; nothing was changed.")
        }
    }
}
