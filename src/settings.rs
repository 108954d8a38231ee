//! Configuration as an operator writes it: documented defaults, under an optional TOML file,
//! under environment variables (the names the platform already uses). [`Settings::load`]
//! reads them once; [`Settings::build`] validates them into `jobs::config::Config`, failing
//! with one line that names the setting and says what is expected.

mod retention;

use std::{net::SocketAddr, path::{Path, PathBuf}, time::Duration};

use anyhow::{Context, Result, bail};
use figment::{Figment, providers::{Format, Serialized, Toml}};
use jobs::{
    Secret, Vault, VaultKey,
    job::JobSettings,
    config::{Config, DatabaseConfig, HttpConfig, InstagramConfig, NotifyConfig, PlatformCredentials, PlatformsConfig, TiktokConfig},
};
use serde::{Deserialize, Serialize};

/// Every setting, flat; each field is also an environment variable (upper-cased name).
/// README.md's configuration table documents them: keep the two in step.
/// Deliberately not `Debug`: it holds secrets as plain strings until [`Settings::build`].
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub database_url: Option<String>,
    pub database_max_connections: u32,
    pub database_timeout_secs: u64,
    pub bind_addr: String,
    pub data_dir: PathBuf,
    pub encryption_key: Option<String>,
    pub encryption_keys_previous: Option<String>,
    pub cron_job_secret: Option<String>,
    pub jwt_secret: Option<String>,
    pub notify_webhook_url: Option<String>,
    pub notify_webhook_secret: Option<String>,
    pub instagram_client_id: Option<String>,
    pub instagram_client_secret: Option<String>,
    pub instagram_redirect_uri: Option<String>,
    pub tiktok_client_key: Option<String>,
    pub tiktok_client_secret: Option<String>,
    pub tiktok_redirect_uri: Option<String>,
    /// Use the sandbox for a platform without credentials; none: on in `up` only.
    pub sandbox: Option<bool>,
    pub sandbox_url: Option<String>,
    pub sandbox_admin_token: Option<String>,
    pub platform_timeout_secs: u64,
    pub platform_connect_timeout_secs: u64,
    pub pacing_instagram_ms: u64,
    pub pacing_tiktok_ms: u64,
    /// Extra gap added to every pacing slot; none: `jobs::pacing::DEFAULT_MARGIN`.
    pub pacing_margin_ms: Option<f64>,
    pub sync_post_cap: usize,
    pub connect_concurrency: usize,
    pub refresh_concurrency: usize,
    pub sync_concurrency: usize,
    pub notify_concurrency: usize,
    pub connect_batch: Option<usize>,
    pub refresh_batch: Option<usize>,
    pub sync_batch: Option<usize>,
    pub notify_batch: Option<usize>,
    pub connect_timeout_secs: u64,
    pub refresh_timeout_secs: u64,
    pub sync_timeout_secs: u64,
    pub notify_timeout_secs: u64,
    pub worker_poll_ms: u64,
    pub orphan_after_secs: u64,
    pub retry_base_secs: u64,
    pub retry_cap_secs: u64,
    pub cron_refresh: String,
    pub cron_sync: String,
    pub cron_timezone: String,
    pub cron_prune: String,
    pub retain_done_jobs: String,
    pub retain_dead_jobs: String,
    pub retain_job_runs: String,
    pub retain_snapshots: String,
    pub retain_daily_snapshots: String,
    pub retain_notifications: String,
    pub retain_cron_runs: String,
    pub retain_workers: String,
    pub retain_audit: String,
    pub metrics_addr: Option<String>,
    pub migrate_on_start: bool,
    pub log_format: String,
    pub frontend_url: Option<String>,
    /// Where users' browsers reach this API (a data deletion's status page is under it).
    pub public_url: Option<String>,
    pub service_token: Option<String>,
    pub rate_limits: String,
    pub trusted_proxies: String,
    pub keep_history_on_disconnect: bool,
    pub webhook_tolerance_secs: u64,
    pub max_body_bytes: usize,
    pub ops_password: Option<String>,
    /// Named operators, `name:hash` separated by spaces, newlines or `;`.
    pub ops_users: Option<String>,
    pub dashboard_read_only: bool,
    pub clock_offset_secs: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            database_url: None,
            database_max_connections: 10,
            database_timeout_secs: 5,
            bind_addr: "127.0.0.1:8080".into(),
            data_dir: "data".into(),
            encryption_key: None,
            encryption_keys_previous: None,
            cron_job_secret: None,
            jwt_secret: None,
            notify_webhook_url: None,
            notify_webhook_secret: None,
            instagram_client_id: None,
            instagram_client_secret: None,
            instagram_redirect_uri: None,
            tiktok_client_key: None,
            tiktok_client_secret: None,
            tiktok_redirect_uri: None,
            sandbox: None,
            sandbox_url: None,
            sandbox_admin_token: None,
            platform_timeout_secs: 15,
            platform_connect_timeout_secs: 5,
            pacing_instagram_ms: 2000,
            pacing_tiktok_ms: 2000,
            pacing_margin_ms: None,
            sync_post_cap: 1000,
            connect_concurrency: 4,
            refresh_concurrency: 8,
            sync_concurrency: 8,
            notify_concurrency: 4,
            connect_batch: None,
            refresh_batch: None,
            sync_batch: None,
            notify_batch: None,
            connect_timeout_secs: 120,
            refresh_timeout_secs: 120,
            sync_timeout_secs: 600,
            notify_timeout_secs: 60,
            worker_poll_ms: 500,
            orphan_after_secs: 5,
            retry_base_secs: 5,
            retry_cap_secs: 3600,
            cron_refresh: "0 2 * * *".into(),
            cron_sync: "0 3 * * *".into(),
            cron_timezone: "UTC".into(),
            cron_prune: worker::cron::PRUNE_EVERY_TEN_MINUTES.into(),
            retain_done_jobs: "7d".into(),
            retain_dead_jobs: "30d".into(),
            retain_job_runs: "30d".into(),
            retain_snapshots: "30d".into(),
            retain_daily_snapshots: "730d".into(),
            retain_notifications: "30d".into(),
            retain_cron_runs: "90d".into(),
            retain_workers: "1d".into(),
            retain_audit: "365d".into(),
            metrics_addr: None,
            migrate_on_start: true,
            log_format: "text".into(),
            frontend_url: None,
            public_url: None,
            service_token: None,
            rate_limits: String::new(),
            trusted_proxies: String::new(),
            keep_history_on_disconnect: true,
            webhook_tolerance_secs: 300,
            max_body_bytes: 64 * 1024,
            ops_password: None,
            ops_users: None,
            dashboard_read_only: false,
            clock_offset_secs: 0,
        }
    }
}

/// The environment variables read, one per [`Settings`] field.
pub const ENV_VARS: &[&str] = &[
    "DATABASE_URL", "DATABASE_MAX_CONNECTIONS", "DATABASE_TIMEOUT_SECS", "BIND_ADDR", "DATA_DIR",
    "ENCRYPTION_KEY", "ENCRYPTION_KEYS_PREVIOUS", "CRON_JOB_SECRET", "JWT_SECRET",
    "NOTIFY_WEBHOOK_URL", "NOTIFY_WEBHOOK_SECRET", "INSTAGRAM_CLIENT_ID", "INSTAGRAM_CLIENT_SECRET",
    "INSTAGRAM_REDIRECT_URI", "TIKTOK_CLIENT_KEY", "TIKTOK_CLIENT_SECRET", "TIKTOK_REDIRECT_URI",
    "SANDBOX", "SANDBOX_URL", "SANDBOX_ADMIN_TOKEN", "PLATFORM_TIMEOUT_SECS", "PLATFORM_CONNECT_TIMEOUT_SECS", "PACING_INSTAGRAM_MS", "PACING_TIKTOK_MS",
    "PACING_MARGIN_MS",
    "SYNC_POST_CAP", "CONNECT_CONCURRENCY", "REFRESH_CONCURRENCY", "SYNC_CONCURRENCY", "NOTIFY_CONCURRENCY",
    "CONNECT_BATCH", "REFRESH_BATCH", "SYNC_BATCH", "NOTIFY_BATCH", "CONNECT_TIMEOUT_SECS", "REFRESH_TIMEOUT_SECS",
    "SYNC_TIMEOUT_SECS", "NOTIFY_TIMEOUT_SECS", "WORKER_POLL_MS", "ORPHAN_AFTER_SECS",
    "RETRY_BASE_SECS", "RETRY_CAP_SECS", "CRON_REFRESH", "CRON_SYNC", "CRON_TIMEZONE", "CRON_PRUNE",
    "RETAIN_DONE_JOBS", "RETAIN_DEAD_JOBS", "RETAIN_JOB_RUNS", "RETAIN_SNAPSHOTS", "RETAIN_DAILY_SNAPSHOTS",
    "RETAIN_NOTIFICATIONS", "RETAIN_CRON_RUNS", "RETAIN_WORKERS", "RETAIN_AUDIT", "METRICS_ADDR", "MIGRATE_ON_START", "LOG_FORMAT",
    "FRONTEND_URL", "PUBLIC_URL", "SERVICE_TOKEN", "RATE_LIMITS", "TRUSTED_PROXIES", "KEEP_HISTORY_ON_DISCONNECT", "WEBHOOK_TOLERANCE_SECS", "MAX_BODY_BYTES", "OPS_PASSWORD", "OPS_USERS", "DASHBOARD_READ_ONLY",
    "CLOCK_OFFSET_SECS",
];

/// How strictly secrets are required.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyPolicy {
    /// `up`: a missing `ENCRYPTION_KEY` is generated into the data folder (development).
    GenerateForDevelopment,
    /// `api`, `worker`, `keys rotate`: a missing key stops start-up.
    Require,
}

impl Settings {
    /// Defaults, then the TOML file (if any), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Settings> {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            if !path.exists() {
                bail!("configuration file {} does not exist", path.display());
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        // Environment values are taken as plain strings (figment's Env provider would read
        // `JWT_SECRET=12345` as a number); `extract_lossy` turns "10" into 10 where needed.
        let env: std::collections::BTreeMap<String, String> = ENV_VARS
            .iter()
            .filter_map(|name| std::env::var(name).ok().map(|v| (name.to_lowercase(), v)))
            .collect();
        fig = fig.merge(Serialized::defaults(env));
        fig.extract_lossy().map_err(|e| anyhow::anyhow!(setting_error(&e)))
    }

    /// The database URL: `DATABASE_URL`, or the SQLite file in the data folder.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("socialsync.db").display()))
    }

    pub fn database(&self) -> Result<DatabaseConfig> {
        let url = self.database_url();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://") || url.starts_with("sqlite:")) {
            bail!("DATABASE_URL is malformed: expected postgres://… or sqlite://…");
        }
        Ok(DatabaseConfig {
            url: Secret::new(url),
            max_connections: self.database_max_connections.max(1),
            acquire_timeout: Duration::from_secs(self.database_timeout_secs.max(1)),
        })
    }

    /// The vault, from `ENCRYPTION_KEY` and `ENCRYPTION_KEYS_PREVIOUS`.
    pub fn vault(&self, policy: KeyPolicy) -> Result<Vault> {
        let current = match (&self.encryption_key, policy) {
            (Some(k), _) => parse_key("ENCRYPTION_KEY", k)?,
            (None, KeyPolicy::GenerateForDevelopment) => self.development_key()?,
            (None, KeyPolicy::Require) => bail!(
                "ENCRYPTION_KEY is not set: it seals tokens at rest; generate one with `socialsync keys generate`"
            ),
        };
        let previous = self
            .encryption_keys_previous
            .iter()
            .flat_map(|list| list.split(','))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(|k| parse_key("ENCRYPTION_KEYS_PREVIOUS", k))
            .collect::<Result<Vec<_>>>()?;
        Ok(Vault::new(current, previous))
    }

    /// The development key in the data folder, created on first use.
    fn development_key(&self) -> Result<VaultKey> {
        let path = self.data_dir.join("dev-encryption.key");
        if let Ok(text) = std::fs::read_to_string(&path) {
            return VaultKey::parse(&text).map_err(|e| anyhow::anyhow!("{} is malformed: {e}", path.display()));
        }
        std::fs::create_dir_all(&self.data_dir).with_context(|| format!("cannot create {}", self.data_dir.display()))?;
        let key = VaultKey::generate();
        write_private(&path, key.expose())?;
        tracing::warn!(
            path = %path.display(),
            "ENCRYPTION_KEY is not set: generated a development key (set ENCRYPTION_KEY in production)"
        );
        VaultKey::parse(key.expose()).map_err(|e| anyhow::anyhow!("generated key: {e}"))
    }

    /// The validated configuration for a process.
    pub fn build(&self, policy: KeyPolicy) -> Result<Config> {
        let bind: SocketAddr = self.bind_addr.parse().map_err(|_| {
            anyhow::anyhow!("BIND_ADDR is malformed: expected host:port such as 127.0.0.1:8080, got {:?}", self.bind_addr)
        })?;
        if !matches!(self.log_format.as_str(), "text" | "json") {
            bail!("LOG_FORMAT is malformed: expected text or json, got {:?}", self.log_format);
        }
        if let Some(ms) = self.pacing_margin_ms.filter(|ms| !(0.0..=60_000.0).contains(ms)) {
            bail!("PACING_MARGIN_MS is out of range: expected milliseconds from 0 to 60000, got {ms}");
        }
        self.retention()?;
        let database = self.database()?;
        let instagram = credentials(
            "INSTAGRAM",
            [&self.instagram_client_id, &self.instagram_client_secret, &self.instagram_redirect_uri],
            ["CLIENT_ID", "CLIENT_SECRET", "REDIRECT_URI"],
        )?;
        let tiktok = credentials(
            "TIKTOK",
            [&self.tiktok_client_key, &self.tiktok_client_secret, &self.tiktok_redirect_uri],
            ["CLIENT_KEY", "CLIENT_SECRET", "REDIRECT_URI"],
        )?;
        self.check_sandbox(policy, [("INSTAGRAM", instagram.is_none()), ("TIKTOK", tiktok.is_none())])?;
        // Last: in development this writes a key file, which a bad setting above should prevent.
        let vault = self.vault(policy)?;
        Ok(Config {
            database,
            http: HttpConfig { bind },
            vault,
            cron_secret: self.cron_job_secret.clone().map(Secret::new),
            jwt_secret: self.jwt_secret.clone().map(Secret::new),
            notify: NotifyConfig {
                webhook_url: self.notify_webhook_url.clone(),
                webhook_secret: self.notify_webhook_secret.clone().map(Secret::new),
            },
            instagram,
            tiktok,
            migrate_on_start: self.migrate_on_start,
        })
    }
}

impl Settings {
    /// Whether a platform without credentials may use the sandbox: asked for with
    /// `SANDBOX=true`, on by default in `up` (development) only.
    pub fn sandbox_allowed(&self, policy: KeyPolicy) -> bool {
        self.sandbox.unwrap_or(policy == KeyPolicy::GenerateForDevelopment)
    }

    /// A production process never simulates a platform by accident: without the sandbox, each
    /// platform needs its credentials.
    fn check_sandbox(&self, policy: KeyPolicy, uncredentialed: [(&str, bool); 2]) -> Result<()> {
        if self.sandbox_allowed(policy) {
            return Ok(());
        }
        if let Some((platform, _)) = uncredentialed.iter().find(|(_, missing)| *missing) {
            let names = if *platform == "TIKTOK" { ["CLIENT_KEY", "CLIENT_SECRET", "REDIRECT_URI"] } else { ["CLIENT_ID", "CLIENT_SECRET", "REDIRECT_URI"] };
            let names: Vec<String> = names.iter().map(|n| format!("{platform}_{n}")).collect();
            bail!("{} not set: set them, or SANDBOX=true to simulate {} with the sandbox platform (development and tests only)", names.join(", "), platform.to_lowercase());
        }
        if self.sandbox_url.is_some() {
            bail!("SANDBOX_URL is set but SANDBOX is not true: set SANDBOX=true to use the sandbox platform");
        }
        Ok(())
    }

    /// The sandbox's control surface when this process serves the sandbox: open in `up` unless
    /// `SANDBOX_ADMIN_TOKEN` is set; behind that token (closed without it) in `api`.
    pub fn sandbox_admin(&self, policy: KeyPolicy) -> sandbox::AdminAccess {
        let token = self.sandbox_admin_token.as_deref().filter(|t| !t.is_empty()).map(std::sync::Arc::from);
        match (token, policy) {
            (None, KeyPolicy::GenerateForDevelopment) => sandbox::AdminAccess::Open,
            (token, _) => sandbox::AdminAccess::Token(token),
        }
    }

    /// The platform clients' configuration. A platform without credentials uses the sandbox:
    /// at `SANDBOX_URL` if set, else the one this process serves at `{public_url}/sandbox`.
    /// Its OAuth redirect goes to this API's callback at `public_url`.
    pub fn platforms(&self, config: &Config, public_url: &str) -> PlatformsConfig {
        let public_url = public_url.trim_end_matches('/');
        let sandbox = self.sandbox_url.clone().unwrap_or_else(|| format!("{public_url}/sandbox"));
        let sandbox_creds = |platform: &str, id: &str, secret: &str| PlatformCredentials {
            client_id: id.into(),
            client_secret: Secret::from(secret),
            redirect_uri: format!("{public_url}/api/v1/social-media/{platform}/callback"),
        };
        PlatformsConfig {
            instagram: match &config.instagram {
                Some(c) => InstagramConfig::production(c.clone()),
                None => InstagramConfig::sandbox(&sandbox, sandbox_creds("instagram", sandbox::INSTAGRAM_CLIENT_ID, sandbox::INSTAGRAM_CLIENT_SECRET)),
            },
            tiktok: match &config.tiktok {
                Some(c) => TiktokConfig::production(c.clone()),
                None => TiktokConfig::sandbox(&sandbox, sandbox_creds("tiktok", sandbox::TIKTOK_CLIENT_KEY, sandbox::TIKTOK_CLIENT_SECRET)),
            },
            connect_timeout: Duration::from_secs(self.platform_connect_timeout_secs.max(1)),
            request_timeout: Duration::from_secs(self.platform_timeout_secs.max(1)),
        }
    }
}

impl Settings {
    /// The handlers' tunables.
    pub fn job_settings(&self, config: &Config) -> JobSettings {
        JobSettings {
            instagram_spacing: Duration::from_millis(self.pacing_instagram_ms),
            tiktok_spacing: Duration::from_millis(self.pacing_tiktok_ms),
            // In range: checked by `build`.
            pacing_margin: self.pacing_margin_ms.and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok()).unwrap_or(jobs::pacing::DEFAULT_MARGIN),
            sync_post_cap: self.sync_post_cap.max(1),
            notify_webhook_url: config.notify.webhook_url.clone(),
            notify_webhook_secret: config.notify.webhook_secret.clone(),
            // Valid: checked by `build`.
            retention: self.retention().unwrap_or_default(),
            ..JobSettings::default()
        }
    }

    /// The queue runtime's settings; a bad cron expression or time zone stops start-up.
    pub fn worker_config(&self) -> Result<worker::WorkerConfig> {
        for (name, expr) in [("CRON_REFRESH", &self.cron_refresh), ("CRON_SYNC", &self.cron_sync), ("CRON_PRUNE", &self.cron_prune)] {
            worker::cron::parse(expr).map_err(|e| anyhow::anyhow!("{name} is malformed: {e}"))?;
        }
        let timezone = self
            .cron_timezone
            .parse()
            .map_err(|_| anyhow::anyhow!("CRON_TIMEZONE is malformed: expected an IANA name such as UTC or Europe/Berlin, got {:?}", self.cron_timezone))?;
        let defaults = worker::WorkerConfig::default();
        let queue = |n: usize, batch: Option<usize>, timeout: u64| worker::QueueConfig {
            concurrency: n.max(1),
            batch: batch.unwrap_or(n).max(1),
            timeout: Duration::from_secs(timeout.max(1)),
        };
        Ok(worker::WorkerConfig {
            connect: queue(self.connect_concurrency, self.connect_batch, self.connect_timeout_secs),
            refresh: queue(self.refresh_concurrency, self.refresh_batch, self.refresh_timeout_secs),
            sync: queue(self.sync_concurrency, self.sync_batch, self.sync_timeout_secs),
            notify: queue(self.notify_concurrency, self.notify_batch, self.notify_timeout_secs),
            poll_interval: Duration::from_millis(self.worker_poll_ms.max(10)),
            orphan_after: Duration::from_secs(self.orphan_after_secs.max(1)),
            retry_base: Duration::from_secs(self.retry_base_secs.max(1)),
            retry_cap: Duration::from_secs(self.retry_cap_secs.max(1)),
            cron: worker::cron::CronConfig {
                refresh_schedule: self.cron_refresh.clone(),
                sync_schedule: self.cron_sync.clone(),
                prune_schedule: self.cron_prune.clone(),
                timezone,
                ..defaults.cron.clone()
            },
            ..defaults
        })
    }
}

impl Settings {
    /// The API's configuration. `public_url` is where this process is reached (the default
    /// frontend is its `/demo` page). In development (`jwt` absent and `dev` set) a throw-away
    /// JWT secret signs the demo page's visitor in as `demo-user`.
    pub fn api_config(&self, config: &Config, jobs: jobs::job::JobContext, public_url: &str, dev: bool) -> Result<api::ApiConfig> {
        let public_url = self.public_url.clone().unwrap_or_else(|| public_url.to_owned());
        let public_url = public_url.trim_end_matches('/');
        url::Url::parse(public_url).map_err(|_| anyhow::anyhow!("PUBLIC_URL is malformed: expected an absolute URL such as https://api.example.com, got {public_url:?}"))?;
        let frontend_url = self.frontend_url.clone().unwrap_or_else(|| format!("{public_url}/demo"));
        url::Url::parse(&frontend_url).map_err(|_| anyhow::anyhow!("FRONTEND_URL is malformed: expected an absolute URL such as https://app.example.com/settings, got {frontend_url:?}"))?;
        let policies = api::limits::Policies::with_overrides(&self.rate_limits).map_err(|e| anyhow::anyhow!("RATE_LIMITS is malformed: {e}"))?;
        let trusted_proxies = self
            .trusted_proxies
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<ipnet::IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| anyhow::anyhow!("TRUSTED_PROXIES is malformed: expected IP addresses or CIDR ranges, got {s:?}"))
            })
            .collect::<Result<Vec<_>>>()?;
        let (jwt, demo_user) = match (&config.jwt_secret, dev) {
            (Some(secret), _) => (Some(api::auth::Jwt::new(secret)), None),
            (None, true) => {
                let secret: String = jobs::vault::random_bytes::<32>().iter().map(|b| format!("{b:02x}")).collect();
                tracing::warn!("JWT_SECRET is not set: using a throw-away secret; /demo signs you in as demo-user (set JWT_SECRET in production)");
                (Some(api::auth::Jwt::new(&Secret::new(secret))), Some("demo-user".to_owned()))
            }
            (None, false) => bail!("JWT_SECRET is not set: the API verifies user tokens with it; generate one with `socialsync keys generate`"),
        };
        Ok(api::ApiConfig {
            jobs,
            jwt,
            cron_secret: config.cron_secret.clone(),
            service_token: self.service_token.clone().map(Secret::new),
            policies,
            trusted_proxies,
            frontend_url,
            public_url: public_url.to_owned(),
            keep_history_on_disconnect: self.keep_history_on_disconnect,
            webhook_tolerance_secs: self.webhook_tolerance_secs.max(1) as i64,
            max_body_bytes: self.max_body_bytes.max(1024),
            demo_user,
            dashboard: Some(self.dashboard_config(config, public_url, dev)?),
        })
    }

    /// The ops dashboard: behind `OPS_USERS` and/or `OPS_PASSWORD`; open without either in
    /// development (`up`), off without either in production.
    fn dashboard_config(&self, config: &Config, public_url: &str, dev: bool) -> Result<dashboard::DashboardConfig> {
        let password = self.ops_password.clone().filter(|p| !p.is_empty()).map(Secret::new);
        let users = self.ops_users.clone().unwrap_or_default();
        let operators = dashboard::operators::parse(&users).map_err(anyhow::Error::msg)?;
        let access = match (&password, operators.is_empty(), dev) {
            (None, true, true) => {
                tracing::warn!("neither OPS_USERS nor OPS_PASSWORD is set: the dashboard is open without sign-in (development only)");
                dashboard::Access::Open
            }
            (None, true, false) => {
                tracing::info!("neither OPS_USERS nor OPS_PASSWORD is set: the dashboard is off");
                dashboard::Access::Off
            }
            _ => {
                tracing::info!(operators = operators.len(), shared_password = password.is_some(), "dashboard sign-in");
                dashboard::Access::SignIn { operators, shared: password.clone() }
            }
        };
        // Changing the operators signs everyone out, as changing the password does: a removed
        // operator's session ends with the deploy that removes them.
        let key_material = Secret::new(format!("{}\n{users}", password.as_ref().map_or("", |p| p.expose())));
        // Sessions must verify on every API process: they share JWT_SECRET. Without it (development,
        // one process) a throw-away secret does.
        let server_secret: Vec<u8> = match &config.jwt_secret {
            Some(s) => s.expose().as_bytes().to_vec(),
            None => jobs::vault::random_bytes::<32>().to_vec(),
        };
        let timezone = self.cron_timezone.parse().map_err(|_| anyhow::anyhow!("CRON_TIMEZONE is malformed: expected an IANA name such as UTC or Europe/Berlin, got {:?}", self.cron_timezone))?;
        Ok(dashboard::DashboardConfig {
            session_key: dashboard::session::derive_key(Some(&key_material), &server_secret),
            access,
            read_only: self.dashboard_read_only,
            secure_cookies: public_url.starts_with("https://"),
            schedules: vec![
                dashboard::ScheduleConfig { name: jobs::sweeps::REFRESH_SWEEP, expr: self.cron_refresh.clone() },
                dashboard::ScheduleConfig { name: jobs::sweeps::SYNC_SWEEP, expr: self.cron_sync.clone() },
                dashboard::ScheduleConfig { name: jobs::retention::PRUNE, expr: self.cron_prune.clone() },
            ],
            timezone,
            sweep_chunk: jobs::sweeps::CHUNK,
            live_every: Duration::from_secs(2),
            keep_history_on_disconnect: self.keep_history_on_disconnect,
        })
    }
}

fn parse_key(name: &str, text: &str) -> Result<VaultKey> {
    VaultKey::parse(text)
        .map_err(|e| anyhow::anyhow!("{name} is malformed: {e}; generate one with `socialsync keys generate`"))
}

/// All three of a platform's credentials, or none of them.
fn credentials(platform: &str, values: [&Option<String>; 3], names: [&str; 3]) -> Result<Option<PlatformCredentials>> {
    match values {
        [Some(id), Some(secret), Some(redirect)] => Ok(Some(PlatformCredentials {
            client_id: id.clone(),
            client_secret: Secret::new(secret.clone()),
            redirect_uri: redirect.clone(),
        })),
        [None, None, None] => Ok(None),
        _ => {
            let missing: Vec<_> = values
                .iter()
                .zip(names)
                .filter(|(v, _)| v.is_none())
                .map(|(_, n)| format!("{platform}_{n}"))
                .collect();
            bail!("{} not set: {platform} needs all three credentials, or none (with SANDBOX=true) to use the sandbox", missing.join(", "))
        }
    }
}

/// One line naming the offending setting, from figment's error.
fn setting_error(e: &figment::Error) -> String {
    if let figment::error::Kind::UnknownField(field, _) = &e.kind {
        return format!("unknown setting `{field}` in the configuration file (see README.md, Configuration)");
    }
    let name = e.path.join(".").to_uppercase();
    if name.is_empty() { format!("configuration error: {e}") } else { format!("{name} is malformed: {}", e.kind) }
}

/// Writes a file only the owner can read.
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_has_its_environment_variable() {
        let value = figment::value::Value::serialize(Settings::default()).unwrap();
        let mut fields: Vec<String> = value.into_dict().unwrap().keys().map(|k| k.to_uppercase()).collect();
        fields.sort();
        let mut vars: Vec<String> = ENV_VARS.iter().map(|v| v.to_string()).collect();
        vars.sort();
        assert_eq!(fields, vars);
    }

    #[test]
    fn credentials_are_all_or_nothing() {
        let some = Some("x".to_string());
        assert!(credentials("TIKTOK", [&None, &None, &None], ["A", "B", "C"]).unwrap().is_none());
        assert!(credentials("TIKTOK", [&some, &some, &some], ["A", "B", "C"]).unwrap().is_some());
        let err = credentials("TIKTOK", [&some, &None, &None], ["A", "B", "C"]).unwrap_err().to_string();
        assert!(err.starts_with("TIKTOK_B, TIKTOK_C not set"), "{err}");
    }
}
