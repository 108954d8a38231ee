//! What each subcommand does: wiring only, the work lives in the crates.

use std::future::Future;

use anyhow::{Context, Result};
use jobs::{Store, config::Config, store::Pool};
use tokio_util::sync::CancellationToken;

use crate::settings::{KeyPolicy, Settings};

#[derive(clap::Args, Default)]
pub struct StartArgs {
    /// Don't apply pending migrations at start (overrides MIGRATE_ON_START).
    #[arg(long)]
    no_migrate: bool,
}

pub async fn up(settings: &Settings, args: StartArgs) -> Result<()> {
    let config = settings.build(KeyPolicy::GenerateForDevelopment)?;
    let store = open(&config, &args).await?;
    let listener = bind(&config).await?;
    let addr = listener.local_addr()?;
    let shutdown = shutdown_token();
    let public = format!("http://{addr}");
    let platforms = settings.platforms(&config, &public);
    let sandbox = announce_platforms(&config, &platforms, &public).map(|s| s.with_admin(settings.sandbox_admin(KeyPolicy::GenerateForDevelopment)));
    let state = api_state(settings, &config, &store, sandbox, &platforms, &public, true)?;
    tracing::info!(database = %config.database.redacted_url(), "socialsync is up");
    println!("socialsync is up on {public}  — Ctrl-C stops it");
    println!("  try it:   {public}/demo");
    println!("  API docs: {public}/docs   health: {public}/readyz");
    println!("  ops:      {public}/dashboard");
    let api = api::serve(state, listener, shutdown.clone().cancelled_owned());
    let setup = worker_setup(settings, &config, &store, &platforms)?;
    let workers = worker::run_workers(setup, shutdown.clone());
    let (api, workers) = tokio::join!(api, workers);
    store.close().await;
    api.context("API server")?;
    workers.context("workers")?;
    Ok(())
}

pub async fn api(settings: &Settings, args: StartArgs) -> Result<()> {
    let config = settings.build(KeyPolicy::Require)?;
    let store = open(&config, &args).await?;
    let listener = bind(&config).await?;
    let addr = listener.local_addr()?;
    let public = format!("http://{addr}");
    let platforms = settings.platforms(&config, &public);
    let admin = settings.sandbox_admin(KeyPolicy::Require);
    if matches!(admin, sandbox::AdminAccess::Token(None)) && (config.instagram.is_none() || config.tiktok.is_none()) {
        tracing::info!("SANDBOX_ADMIN_TOKEN is not set: the sandbox's control surface /sandbox/_admin is closed");
    }
    let sandbox = announce_platforms(&config, &platforms, &public).map(|s| s.with_admin(admin));
    let state = api_state(settings, &config, &store, sandbox, &platforms, &public, false)?;
    tracing::info!(%addr, database = %config.database.redacted_url(), "API listening");
    api::serve(state, listener, shutdown_token().cancelled_owned()).await?;
    store.close().await;
    Ok(())
}

pub async fn worker(settings: &Settings, args: StartArgs) -> Result<()> {
    let config = settings.build(KeyPolicy::Require)?;
    let store = open(&config, &args).await?;
    // Without credentials a worker talks to the sandbox an API process serves.
    let api_url = format!("http://{}", config.http.bind);
    let platforms = settings.platforms(&config, &api_url);
    let setup = worker_setup(settings, &config, &store, &platforms)?;
    let shutdown = shutdown_token();
    let render = metrics_render();
    let listener = match &settings.metrics_addr {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr.as_str())
                .await
                .with_context(|| format!("cannot listen on {addr} (METRICS_ADDR)"))?;
            tracing::info!(addr = %l.local_addr()?, "metrics at /metrics");
            Some(l)
        }
        None => None,
    };
    let metrics = async {
        match listener {
            Some(l) => api::serve_metrics(render, l, shutdown.clone().cancelled_owned()).await,
            None => Ok(()),
        }
    };
    let (workers, metrics) = tokio::join!(worker::run_workers(setup, shutdown.clone()), metrics);
    workers?;
    metrics.context("metrics server")?;
    store.close().await;
    Ok(())
}

pub async fn migrate(settings: &Settings) -> Result<()> {
    let store = Store::connect(&settings.database()?).await?;
    apply_migrations(&store).await?;
    store.close().await;
    Ok(())
}

pub fn keys_generate() {
    let token = || -> String {
        jobs::vault::random_bytes::<32>().iter().map(|b| format!("{b:02x}")).collect()
    };
    println!("ENCRYPTION_KEY={}", jobs::VaultKey::generate().expose());
    println!("CRON_JOB_SECRET={}", token());
    println!("JWT_SECRET={}", token());
    println!("NOTIFY_WEBHOOK_SECRET={}", token());
}

pub async fn keys_rotate(settings: &Settings, batch: u32) -> Result<()> {
    let vault = settings.vault(KeyPolicy::Require)?;
    let store = Store::connect(&settings.database()?).await?;
    tracing::info!(key_id = vault.current_key_id(), "re-encrypting stored secrets under the current key");
    let done = store
        .rotate_secrets(&vault, batch.max(1), |p| {
            tracing::info!(reencrypted = p.reencrypted, unreadable = p.unreadable, "rotation progress")
        })
        .await?;
    tracing::info!(reencrypted = done.reencrypted, unreadable = done.unreadable, "rotation finished");
    store.close().await;
    if done.unreadable > 0 {
        anyhow::bail!("{} stored secrets could not be opened with any configured key; see the log", done.unreadable);
    }
    Ok(())
}

/// Connects, and migrates unless told not to.
async fn open(config: &Config, args: &StartArgs) -> Result<Store> {
    let store = Store::connect(&config.database).await?;
    if config.migrate_on_start && !args.no_migrate {
        apply_migrations(&store).await?;
    }
    Ok(store)
}

async fn apply_migrations(store: &Store) -> Result<()> {
    match store.pool() {
        Pool::Postgres(p) => migrations::run_postgres(p).await,
        Pool::Sqlite(p) => migrations::run_sqlite(p).await,
    }
    .context("applying migrations")?;
    let version = store.schema_version().await?.unwrap_or(0);
    tracing::info!(database = store.backend_name(), schema_version = version, "migrations applied");
    Ok(())
}

async fn bind(config: &Config) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(config.http.bind)
        .await
        .with_context(|| format!("cannot listen on {} (BIND_ADDR)", config.http.bind))
}

fn worker_setup(
    settings: &Settings,
    config: &Config,
    store: &Store,
    platforms: &jobs::config::PlatformsConfig,
) -> Result<worker::WorkerSetup> {
    Ok(worker::WorkerSetup { context: job_context(settings, config, store, platforms)?, config: settings.worker_config()? })
}

/// What handlers (and the API) use to reach the store, the vault and the platforms.
fn job_context(settings: &Settings, config: &Config, store: &Store, platforms: &jobs::config::PlatformsConfig) -> Result<jobs::job::JobContext> {
    let http = reqwest::Client::builder()
        .connect_timeout(platforms.connect_timeout)
        .timeout(platforms.request_timeout)
        .build()
        .context("building the HTTP client")?;
    Ok(jobs::job::JobContext {
        store: store.clone(),
        vault: config.vault.clone(),
        clients: jobs::clients::Clients::new(platforms),
        clock: match settings.clock_offset_secs {
            0 => std::sync::Arc::new(jobs::SystemClock),
            secs => {
                tracing::warn!(offset_secs = secs, "CLOCK_OFFSET_SECS shifts this process's clock (a rehearsal setting: leave it 0 in production)");
                std::sync::Arc::new(jobs::OffsetClock::by_secs(secs))
            }
        },
        settings: settings.job_settings(config),
        worker: worker::process_name(),
        http,
        local_gates: Default::default(),
        paused: Default::default(),
    })
}

fn api_state(
    settings: &Settings,
    config: &Config,
    store: &Store,
    sandbox: Option<sandbox::Sandbox>,
    platforms: &jobs::config::PlatformsConfig,
    public_url: &str,
    dev: bool,
) -> Result<api::ApiState> {
    let jobs = job_context(settings, config, store, platforms)?;
    Ok(api::ApiState {
        store: store.clone(),
        expected_schema_version: migrations::latest_version(),
        expected_queue_version: migrations::queue_latest(store.backend_name() == "postgres"),
        sandbox,
        metrics: Some(metrics_render()),
        config: std::sync::Arc::new(settings.api_config(config, jobs, public_url, dev)?),
        guard_hits: Default::default(),
    })
}

/// This process's Prometheus recorder, installed on first use.
fn metrics_render() -> api::MetricsRender {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> = std::sync::OnceLock::new();
    let handle = HANDLE
        .get_or_init(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .expect("the metrics recorder is installed once")
        })
        .clone();
    std::sync::Arc::new(move || handle.render())
}

/// Logs which platforms are real and which the sandbox; returns the sandbox to mount when a
/// platform lacks credentials (which `Settings::build` allows only with the sandbox on).
fn announce_platforms(config: &Config, platforms: &jobs::config::PlatformsConfig, public_url: &str) -> Option<sandbox::Sandbox> {
    let missing: Vec<&str> = [("instagram", config.instagram.is_none()), ("tiktok", config.tiktok.is_none())]
        .into_iter()
        .filter_map(|(name, missing)| missing.then_some(name))
        .collect();
    if missing.is_empty() {
        return None;
    }
    tracing::warn!(
        platforms = %missing.join(", "),
        instagram = %platforms.instagram.graph_url,
        tiktok = %platforms.tiktok.open_url,
        "no platform credentials configured: using the sandbox platform (simulated Instagram and TikTok)"
    );
    // The simulated platforms tell this process when a user revokes the app, as the real ones
    // tell a production API at the callback URLs registered with them.
    let sandbox = sandbox::Sandbox::default();
    sandbox.configure(|s| {
        s.instagram_deauthorize_url = Some(format!("{public_url}/api/v1/platforms/instagram/deauthorize"));
        s.instagram_data_deletion_url = Some(format!("{public_url}/api/v1/platforms/instagram/data-deletion"));
        s.tiktok_webhook_url = Some(format!("{public_url}/api/v1/platforms/tiktok/webhook"));
    });
    Some(sandbox)
}

pub async fn sandbox(addr: std::net::SocketAddr) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let addr = listener.local_addr()?;
    println!("sandbox platform on http://{addr}  (control surface: http://{addr}/_admin/accounts)");
    tracing::info!(%addr, "sandbox platform listening");
    sandbox::serve(sandbox::Sandbox::default(), listener, shutdown_token().cancelled_owned()).await?;
    Ok(())
}

/// Cancelled on Ctrl-C or SIGTERM. A second signal exits at once.
fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        signal().await;
        tracing::info!("shutdown requested; finishing in-flight work (a second Ctrl-C exits now)");
        t.cancel();
        signal().await;
        std::process::exit(130);
    });
    token
}

fn signal() -> impl Future<Output = ()> {
    async {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("SIGTERM handler installs");
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
    }
}

