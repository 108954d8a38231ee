//! The ops dashboard, mounted by the API under `/dashboard`: server-rendered pages (maud), a
//! little hand-written JS, live numbers over Server-Sent Events, assets embedded in the binary.
//!
//! - [`session`]: sign-in (`OPS_USERS` by name, [`operators`], or the shared `OPS_PASSWORD`),
//!   the signed session cookie, CSRF tokens, read-only; `audit` records every action.
//! - `live`: one shared count query per tick, fanned out to every watching browser.
//! - `overview`, `jobs_pages`, `cron_page`, `workers_page`, `accounts_page`, `account_page`,
//!   `health_page`, `audit`: the pages; `page` is their shell, `chart` draws their SVG charts;
//!   `pauses_panel` the banner and the pause and resume forms.
//!
//! Every action is a plain form POST with a CSRF token; it redirects back to the page it came
//! from with its outcome (or its error) shown inline, and it is logged under `dashboard`.

mod account_page;
mod accounts_page;
mod audit;
mod chart;
mod cron_page;
mod health_page;
mod jobs_pages;
mod live;
mod overview;
mod page;
pub mod operators;
mod pauses_panel;
pub mod session;
mod workers_page;

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use chrono_tz::Tz;
use jobs::job::JobContext;
use poem::{Endpoint, EndpointExt, Request, Route, get, post};

pub use session::Access;

/// Where the dashboard is mounted.
pub const BASE: &str = "/dashboard";

/// A nightly schedule as configured for the workers.
#[derive(Clone, Debug)]
pub struct ScheduleConfig {
    /// The name in `cron_runs` (`token_refresh`, `data_sync`).
    pub name: &'static str,
    pub expr: String,
}

/// Counts failed logins against the API's `auth` rate limit (implemented by the API, which
/// owns the limiter and knows the client's address).
pub trait LoginThrottle: Send + Sync + 'static {
    /// `Some(retry_after)` when this client may not try now.
    fn locked<'a>(&'a self, req: &'a Request) -> Pin<Box<dyn Future<Output = Option<Duration>> + Send + 'a>>;
    /// Counts a failed login; `Some(retry_after)` when that used up the budget.
    fn failed<'a>(&'a self, req: &'a Request) -> Pin<Box<dyn Future<Output = Option<Duration>> + Send + 'a>>;
}

/// In a request's extensions when the browser reached the dashboard over HTTPS (the mounting
/// API decides, since it knows which proxies to believe): the session cookie is then `Secure`.
#[derive(Clone, Copy, Debug)]
pub struct OverHttps;

/// The dashboard's configuration, built by the binary.
#[derive(Clone)]
pub struct DashboardConfig {
    pub access: Access,
    /// Signs session cookies and CSRF tokens; derived from the password and a server secret,
    /// so changing either signs everyone out.
    pub session_key: [u8; 32],
    /// Hides and refuses every action.
    pub read_only: bool,
    /// Always set the cookie's `Secure` flag (the public URL is https); otherwise it is set on a
    /// request marked [`OverHttps`].
    pub secure_cookies: bool,
    pub schedules: Vec<ScheduleConfig>,
    pub timezone: Tz,
    /// Accounts per statement when a sweep is run by hand.
    pub sweep_chunk: u32,
    /// How often live numbers are recomputed while someone watches.
    pub live_every: Duration,
    /// An account disconnected from its page keeps its snapshots and posts
    /// (`KEEP_HISTORY_ON_DISCONNECT`, as for a user's disconnect through the API).
    pub keep_history_on_disconnect: bool,
}

/// What the pages share. Cheap to clone.
#[derive(Clone)]
pub struct Dashboard {
    pub(crate) cx: JobContext,
    pub(crate) config: Arc<DashboardConfig>,
    pub(crate) live: Arc<live::Live>,
    pub(crate) throttle: Option<Arc<dyn LoginThrottle>>,
}

impl Dashboard {
    pub fn new(cx: JobContext, config: DashboardConfig, throttle: Option<Arc<dyn LoginThrottle>>) -> Dashboard {
        let live = Arc::new(live::Live::new(cx.store.clone(), config.live_every));
        Dashboard { cx, config: Arc::new(config), live, throttle }
    }

    /// How many rounds of live count queries this process has run, however many browsers
    /// watch (also the metric `socialsync_dashboard_live_frames_total`).
    pub fn live_frames_computed(&self) -> u64 {
        self.live.frames_computed()
    }
}

/// The dashboard's routes, to be nested at [`BASE`].
pub fn routes(dashboard: Dashboard) -> impl Endpoint {
    let pages = Route::new()
        .at("/", get(overview::show))
        .at("/live", get(live::events))
        .at("/jobs", get(jobs_pages::list))
        .at("/jobs/act", post(jobs_pages::act))
        .at("/jobs/:id", get(jobs_pages::detail))
        .at("/cron", get(cron_page::show))
        .at("/cron/run", post(cron_page::run_now))
        .at("/workers", get(workers_page::show))
        .at("/accounts", get(accounts_page::show))
        .at("/accounts/:id", get(account_page::show))
        .at("/accounts/:id/act", post(account_page::act))
        .at("/health", get(health_page::show))
        .at("/pauses", post(pauses_panel::act))
        .at("/concurrency", post(pauses_panel::set_concurrency))
        .at("/audit", get(audit::show))
        .around(pauses_panel::read)
        .around(audit::actions)
        .around(session::require);
    Route::new()
        .at("/login", get(session::login_page).post(session::login))
        .at("/logout", post(session::logout))
        .at("/assets/dashboard.css", get(page::css))
        .at("/assets/dashboard.js", get(page::js))
        .nest("/", pages)
        .data(dashboard)
}
