//! The HTTP API. Thin: it checks, enqueues and reads; the work happens in `worker`.
//!
//! - [`v1`]: the `/api/v1` endpoints (poem-openapi; spec at `/api/v1/openapi.json`, docs at
//!   `/docs`), behind [`guard`]: body size, rate limits, and one JSON error shape.
//! - [`auth`]: user JWTs, the cron secret, the service token.
//! - [`limits`]: the database-shared sliding-window rate limiter.
//! - [`error`]: [`ApiError`], the `{"error":{"code","message"}}` body.
//! - `health`: `/healthz`, `/readyz`, `/metrics`; `demo`: the first-five-minutes page;
//!   `ops`: the ops dashboard at `/dashboard`, with sign-ins under the `auth` limit.
//!
//! [`serve`] takes a bound listener and a shutdown future, so tests start it on port 0.

pub mod auth;
mod deletion;
mod demo;
pub mod error;
mod headers;
mod health;
pub mod limits;
mod ops;
pub mod v1;

use std::{future::Future, io, sync::Arc, time::Duration};

use jobs::{Secret, Store, Timestamp, job::JobContext};
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response, Route, Server, get, http::StatusCode, listener::TcpAcceptor};
use tracing::Instrument;

pub use error::ApiError;

/// What the API's handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    /// The schema version this build expects; `/readyz` fails until the database has it.
    pub expected_schema_version: i64,
    /// The newest migration of apalis' queue tables this build carries; `/readyz` needs it too.
    pub expected_queue_version: i64,
    /// The sandbox platform, mounted at `/sandbox` when no real credentials are configured.
    pub sandbox: Option<sandbox::Sandbox>,
    /// Renders this process's Prometheus metrics for `/metrics`.
    pub metrics: Option<MetricsRender>,
    pub config: Arc<ApiConfig>,
    /// The guard's rate-limit hits, written in groups (start with `Default::default()`).
    pub guard_hits: Arc<limits::GuardHits>,
}

/// The API's configuration, built by the binary.
#[derive(Clone)]
pub struct ApiConfig {
    /// The handlers' view of the system: store, vault, platform clients, clock, settings.
    pub jobs: JobContext,
    /// Verifies user tokens; none means every user route answers 401.
    pub jwt: Option<auth::Jwt>,
    pub cron_secret: Option<Secret>,
    pub service_token: Option<Secret>,
    pub policies: limits::Policies,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Where the OAuth callback sends the browser back to.
    pub frontend_url: String,
    /// Where users' browsers reach this API (`PUBLIC_URL`): a data deletion's status page.
    pub public_url: String,
    /// Whether a disconnected account keeps its snapshots and posts.
    pub keep_history_on_disconnect: bool,
    /// How far a webhook's signed timestamp may be from now (a replay otherwise).
    pub webhook_tolerance_secs: i64,
    pub max_body_bytes: usize,
    /// Development only (`up` without `JWT_SECRET`): `/demo` signs its visitor in as this user.
    pub demo_user: Option<String>,
    /// The ops dashboard at `/dashboard`; none serves no dashboard.
    pub dashboard: Option<dashboard::DashboardConfig>,
}

/// Renders metrics in the Prometheus text format.
pub type MetricsRender = std::sync::Arc<dyn Fn() -> String + Send + Sync>;

/// How long in-flight requests get to finish after shutdown is asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// All routes.
pub fn app(state: ApiState) -> impl poem::Endpoint {
    let api = v1::service(&state);
    let spec = api.spec_endpoint();
    let docs = api.swagger_ui_html();
    let docs_headers = headers::page(&docs);
    let docs = Route::new().at("/", get(poem::endpoint::make_sync(move |_| poem::web::Html(docs.clone()))));
    let mut routes = Route::new()
        .at("/api/v1/openapi.json", spec.around(guard))
        .nest("/api/v1", api.around(guard))
        .nest("/docs", docs.with(docs_headers))
        .at("/demo", get(demo::page).with(headers::page(&demo::html())))
        .at("/deletion/:code", get(deletion::status).with(headers::page(&deletion::html())))
        .at("/healthz", get(health::healthz))
        .at("/readyz", get(health::readyz))
        .at("/metrics", get(health::metrics));
    if let Some(sandbox) = &state.sandbox {
        routes = routes.nest("/sandbox", sandbox.routes());
    }
    if let Some(ops) = ops::routes(&state) {
        // The dashboard's pages load their script and style from its own assets.
        routes = routes.nest(dashboard::BASE, ops.with(headers::page("")));
    }
    routes.with(headers::everywhere()).data(state).around(log_request)
}

/// One span and one line per request: method, path, status, duration. Never the query string:
/// an OAuth callback carries the authorization code and the state in it (poem's own `Tracing`
/// middleware logs the whole URI, so it is not used).
async fn log_request<E: Endpoint>(next: Arc<E>, req: Request) -> poem::Result<Response> {
    let span = tracing::info_span!("request", method = %req.method(), path = %req.uri().path());
    let started = std::time::Instant::now();
    let result = next.call(req).instrument(span.clone()).await.map(IntoResponse::into_response);
    let status = match &result {
        Ok(resp) => resp.status(),
        Err(e) => e.status(),
    };
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| tracing::debug!(target: "api", status = status.as_u16(), duration_ms = format_args!("{ms:.1}"), "response"));
    result
}

/// In front of every `/api/v1` request: the body-size limit, the per-IP lockout after failed
/// authentications (requests with a valid credential pass it), the general per-IP limit;
/// behind it, every error as the JSON body, and failed authentications and 429 answers counted.
async fn guard<E: Endpoint>(next: Arc<E>, req: Request) -> poem::Result<Response> {
    let state = req.data::<ApiState>().expect("the app attaches its state").clone();
    let resp = checked(next, req).await?;
    if resp.status() == StatusCode::TOO_MANY_REQUESTS {
        ops::count_429(&state);
    }
    Ok(resp)
}

/// What a refused body may still send before the connection is closed on it.
const DRAIN_CAP: u64 = 8 << 20;
const DRAIN_FOR: Duration = Duration::from_secs(2);

/// The body, if it is at most `max` bytes. A larger one (declared or streamed) is refused, but
/// only after reading and dropping what the client is still sending, up to `DRAIN_CAP` bytes or
/// `DRAIN_FOR`: a server that answers 413 and closes with the body unread resets the
/// connection, and the client, still writing, sees a broken pipe instead of the answer (the
/// "lingering close" web servers do for the same reason).
async fn read_body(body: poem::Body, declared: Option<usize>, max: usize) -> Result<Vec<u8>, ()> {
    use tokio::io::AsyncReadExt;
    let mut reader = body.into_async_read();
    if declared.is_none_or(|len| len <= max) {
        let mut buf = Vec::new();
        (&mut reader).take(max as u64 + 1).read_to_end(&mut buf).await.map_err(|_| ())?;
        if buf.len() <= max {
            return Ok(buf);
        }
    }
    let (mut rest, mut sink) = (reader.take(DRAIN_CAP), tokio::io::sink());
    let _ = tokio::time::timeout(DRAIN_FOR, tokio::io::copy(&mut rest, &mut sink)).await;
    Err(())
}

async fn checked<E: Endpoint>(next: Arc<E>, mut req: Request) -> poem::Result<Response> {
    let state = req.data::<ApiState>().expect("the app attaches its state").clone();
    let cfg = &state.config;
    let ip = limits::client_ip(req.remote_addr().as_socket_addr().map(|a| a.ip()), req.header("x-forwarded-for"), &cfg.trusted_proxies)
        .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
    let now = Timestamp::now();
    let checks = async {
        let declared = req.header("content-length").and_then(|l| l.parse::<usize>().ok());
        let body = read_body(req.take_body(), declared, cfg.max_body_bytes)
            .await
            .map_err(|()| error::render(poem::Error::from_status(StatusCode::PAYLOAD_TOO_LARGE)))?;
        req.set_body(body.clone());
        // The lockout check and the general count, in one round trip when both apply.
        // (A locked-out address's requests still count against its general budget.)
        // The platforms' callbacks have a budget of their own: they carry every user's events.
        let per_ip = if req.original_uri().path().starts_with("/api/v1/platforms/") { "platform_events" } else { "general" };
        let (locked, counted) = match (cfg.policies.get("auth"), cfg.policies.get(per_ip)) {
            (Some(auth), Some(general)) => {
                let (counted, locked) = limits::hit_and_check(&state.guard_hits, &state.store, (per_ip, general), ("auth", auth), &ip, now).await?;
                (locked, Some(counted))
            }
            (Some(auth), None) => (limits::over(&state.store, "auth", auth, &ip, now).await?, None),
            (None, Some(general)) => (None, Some(limits::hit(&state.store, per_ip, general, &ip, now).await?)),
            (None, None) => (None, None),
        };
        // Locked out: refused, unless the request proves who it is (see `auth`).
        if let Some(locked) = locked.filter(|_| !auth::carries_valid_credential(&req, &body, cfg)) {
            return Err(locked.error());
        }
        match counted {
            Some(d) if !d.allowed => Err(d.error()),
            d => Ok(d),
        }
    };
    let general = match checks.await {
        Ok(d) => d,
        Err(e) => return Ok(e.into_response()),
    };
    let (mut resp, failed_auth) = match next.call(req).await {
        Ok(resp) => {
            let resp = resp.into_response();
            let failed = resp.status() == StatusCode::UNAUTHORIZED;
            (resp, failed)
        }
        Err(e) => {
            let e = error::render(e);
            // A forged or garbled platform event is a failed authentication too.
            let failed = e.status == StatusCode::UNAUTHORIZED || e.code == "OAUTH_STATE_INVALID" || e.code.starts_with("EVENT_");
            (e.into_response(), failed)
        }
    };
    if failed_auth {
        if let Some(policy) = cfg.policies.get("auth") {
            tracing::info!(target: "rate_limit", %ip, status = resp.status().as_u16(), "failed authentication counted");
            match limits::hit(&state.store, "auth", policy, &ip, now).await {
                Ok(d) if !d.allowed => return Ok(d.error().into_response()),
                Ok(_) => {}
                Err(e) => return Ok(e.into_response()),
            }
        }
    }
    if let Some(d) = general {
        for (name, value) in d.headers() {
            if let Ok(v) = value.parse() {
                resp.headers_mut().insert(name, v);
            }
        }
    }
    Ok(resp)
}

/// Serves only `/metrics` (a worker process's metrics) until `shutdown` resolves.
pub async fn serve_metrics(
    render: MetricsRender,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let app = Route::new().at("/metrics", get(health::metrics_only)).data(render);
    Server::new_with_acceptor(TcpAcceptor::from_tokio(listener)?)
        .run_with_graceful_shutdown(app, shutdown, Some(SHUTDOWN_GRACE))
        .await
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish (up to
/// [`SHUTDOWN_GRACE`]). Meanwhile it purges what the API leaves behind (see [`purge`]).
pub async fn serve(
    state: ApiState,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let acceptor = TcpAcceptor::from_tokio(listener)?;
    let purging = tokio::spawn(purge(state.store.clone()));
    let served = Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(app(state), shutdown, Some(SHUTDOWN_GRACE))
        .await;
    purging.abort();
    served
}

/// How often expired rate-limit counters and OAuth states are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(600);
/// OAuth states are kept this long past their expiry (a late callback still finds its row
/// and gets `OAUTH_STATE_INVALID` rather than nothing to explain).
const KEEP_EXPIRED_STATES: Duration = Duration::from_secs(86_400);

/// Deletes expired rate-limit counters and long-expired OAuth states every [`PURGE_EVERY`].
/// Every API process does it; the deletes are idempotent. (History with a retention is the
/// workers' pruner's: `jobs::retention`.)
async fn purge(store: Store) {
    let mut tick = tokio::time::interval(PURGE_EVERY);
    loop {
        tick.tick().await;
        let now = Timestamp::now();
        let purged = async {
            let counters = store.purge_rate_limits(now).await?;
            let states = store.purge_oauth_states(now.minus(KEEP_EXPIRED_STATES)).await?;
            Ok::<_, jobs::StoreError>((counters, states))
        };
        match purged.await {
            Ok((counters, states)) if counters + states > 0 => {
                tracing::info!(target: "rate_limit", counters, oauth_states = states, "purged expired rows")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %error::error_chain(&e), "purging expired rows failed; trying again later"),
        }
    }
}
