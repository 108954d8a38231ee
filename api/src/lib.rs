//! The HTTP API. Thin: it checks, enqueues and reads; the work happens in `worker`.
//!
//! [`serve`] takes a bound listener and a shutdown future, so tests start it on port 0.

mod health;

use std::{future::Future, io, time::Duration};

use jobs::Store;
use poem::{EndpointExt, Route, Server, get, listener::TcpAcceptor, middleware::Tracing};

/// What the API's handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    /// The schema version this build expects; `/readyz` fails until the database has it.
    pub expected_schema_version: i64,
    /// The sandbox platform, mounted at `/sandbox` when no real credentials are configured.
    pub sandbox: Option<sandbox::Sandbox>,
    /// Renders this process's Prometheus metrics for `/metrics`.
    pub metrics: Option<MetricsRender>,
}

/// Renders metrics in the Prometheus text format.
pub type MetricsRender = std::sync::Arc<dyn Fn() -> String + Send + Sync>;

/// How long in-flight requests get to finish after shutdown is asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// All routes.
pub fn app(state: ApiState) -> impl poem::Endpoint {
    let mut routes = Route::new()
        .at("/healthz", get(health::healthz))
        .at("/readyz", get(health::readyz))
        .at("/metrics", get(health::metrics));
    if let Some(sandbox) = &state.sandbox {
        routes = routes.nest("/sandbox", sandbox.routes());
    }
    routes.data(state).with(Tracing)
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
/// [`SHUTDOWN_GRACE`]).
pub async fn serve(
    state: ApiState,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let acceptor = TcpAcceptor::from_tokio(listener)?;
    Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(app(state), shutdown, Some(SHUTDOWN_GRACE))
        .await
}
