//! All SQL for socialsync's domain tables, behind one API for PostgreSQL and SQLite.
//!
//! One SQL text serves both backends wherever the dialects agree (they agree on `$N`
//! parameters, `ON CONFLICT … DO UPDATE`, `RETURNING`, and on integers for instants). The
//! [`on_pool!`] macro runs the same query expression against whichever pool is configured;
//! where the dialects differ, [`Pool::pick`] chooses the text.
//!
//! SQLite write transactions start with `BEGIN IMMEDIATE` ([`write_tx!`]) so that two
//! connections never both read and then fail to upgrade to a write lock.

use std::{str::FromStr, time::Duration};

use sqlx::{
    Connection, PgConnection, PgPool, SqlitePool,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use crate::config::DatabaseConfig;

/// Runs `$body` with `$p` bound to the concrete pool.
macro_rules! on_pool {
    ($store:expr, $p:ident => $body:expr) => {
        match $store.pool() {
            $crate::store::Pool::Postgres($p) => $body,
            $crate::store::Pool::Sqlite($p) => $body,
        }
    };
}

/// Runs `$body` with `$tx` bound to a fresh write transaction; `$body` commits it.
macro_rules! write_tx {
    ($store:expr, $tx:ident => $body:expr) => {
        match $store.pool() {
            $crate::store::Pool::Postgres(p) => {
                #[allow(unused_mut)]
                let mut $tx = p.begin().await?;
                $body
            }
            $crate::store::Pool::Sqlite(p) => {
                #[allow(unused_mut)]
                let mut $tx = p.begin_with("BEGIN IMMEDIATE").await?;
                $body
            }
        }
    };
}

#[macro_use]
mod outbox;
mod accounts;
mod audit;
pub mod claims;
mod concurrency;
mod cron;
mod events;
mod job_runs;
mod job_search;
mod oauth;
mod ops_reads;
mod overview;
mod pacing;
mod pauses;
mod processes;
mod prune;
mod queue;
mod rate_limits;
mod rollups;
mod rotation;
mod sync_data;

pub use accounts::{Account, NewAccount, RefreshedTokens};
pub use audit::{AuditEntry, AuditFilter, NewAuditEntry};
pub use concurrency::{LiveConcurrency, MAX_LIVE_CONCURRENCY};
pub use cron::CronRun;
pub use events::StoredEvent;
pub use job_runs::{JobOutcome, JobRun, JobRunEnd, JobRunEnding, JobRunStart};
pub use job_search::{JobAction, JobFilter, JobRow, JobState, Selection};
pub use ops_reads::{AccountFilter, AccountRow};
pub use pauses::PAUSES_CHANNEL;
pub use rollups::{DayOutcomes, INACTIVE_COUNTER, JobIds, NightlySync, ROLLED_UP};
pub use overview::{EXACT_COUNTS_BELOW, MinuteCounts, QueueCounts};
pub use rate_limits::RateHit;
pub use prune::{Finished, TableSize};
pub use processes::{API_429_COUNTER, FORGET_PROCESSES_AFTER, ProcessBeat, ProcessQueue, WorkerProcess};
pub use oauth::{NewOAuthState, OAuthState};
pub use outbox::{NewNotification, Notification};
pub use queue::{AttemptEnd, Enqueued, NewJob, new_job_id};
pub use rotation::RotationProgress;
pub use sync_data::{Post, Snapshot};

/// The connection pool of the configured backend.
#[derive(Clone, Debug)]
pub enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Pool {
    /// The SQL text (or texts) for this backend, where the dialects differ.
    pub fn pick<T>(&self, postgres: T, sqlite: T) -> T {
        match self {
            Pool::Postgres(_) => postgres,
            Pool::Sqlite(_) => sqlite,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {url}")]
    Connect { url: String, source: sqlx::Error },
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// The database could not be reached (down, restarting, pool exhausted), as opposed to a
    /// query failing: worth a 503 and a retry, not a 500.
    pub fn is_unavailable(&self) -> bool {
        let e = match self {
            StoreError::Connect { .. } => return true,
            StoreError::Db(e) => e,
            StoreError::Corrupt(_) => return false,
        };
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => true,
            // Class 08: connection exceptions; 57P: the server is shutting down or starting.
            sqlx::Error::Database(d) => d.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// socialsync's domain storage. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
}

impl Store {
    /// Connects to `postgres://…` or `sqlite://…` (creating the SQLite file and its folder).
    ///
    /// SQLite runs in WAL mode with `synchronous = NORMAL`: a committed transaction survives a
    /// process crash, and power loss can drop at most the last transactions, never corrupt.
    pub async fn connect(cfg: &DatabaseConfig) -> Result<Store> {
        let url = cfg.url.expose();
        let connect_err = |source| StoreError::Connect { url: cfg.redacted_url(), source };
        let pool = if cfg.is_postgres() {
            // One direct connection first: a pool would only report "timed out", while this
            // says why (refused, unknown host, authentication, no such database).
            let opts = PgConnectOptions::from_str(url).map_err(connect_err)?;
            let mut probe = tokio::time::timeout(cfg.acquire_timeout, PgConnection::connect_with(&opts))
                .await
                .map_err(|_| connect_err(sqlx::Error::PoolTimedOut))?
                .map_err(connect_err)?;
            // Said once at start: the transport is what an operator checks when throughput
            // falls short (TLS to a server on the same machine costs about 15 %, BENCHMARKS.md).
            match describe_postgres(&mut probe).await {
                Ok(how) => tracing::info!("connected to {how}"),
                Err(e) => tracing::debug!(error = %e, "the connection could not describe itself"),
            }
            let _ = probe.close().await;
            let pool = PgPoolOptions::new()
                .max_connections(cfg.max_connections)
                .acquire_timeout(cfg.acquire_timeout)
                .connect_with(opts)
                .await
                .map_err(connect_err)?;
            Pool::Postgres(pool)
        } else if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(connect_err)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                // Takes effect on a new file only (before its first table): the pruner then
                // returns freed pages (`Store::release_free_pages`).
                .auto_vacuum(SqliteAutoVacuum::Incremental)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            if let Some(dir) = opts.get_filename().parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| connect_err(sqlx::Error::Io(e)))?;
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(cfg.max_connections)
                .acquire_timeout(cfg.acquire_timeout)
                .connect_with(opts)
                .await
                .map_err(connect_err)?;
            Pool::Sqlite(pool)
        } else {
            return Err(connect_err(sqlx::Error::Configuration(
                "DATABASE_URL must start with postgres://, postgresql:// or sqlite:".into(),
            )));
        };
        Ok(Store { pool })
    }

    pub fn from_pool(pool: Pool) -> Store {
        Store { pool }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// `"postgres"` or `"sqlite"`.
    pub fn backend_name(&self) -> &'static str {
        self.pool.pick("postgres", "sqlite")
    }

    /// The newest applied domain migration, or `None` before the first one.
    pub async fn schema_version(&self) -> Result<Option<i64>> {
        let sql = "SELECT MAX(version) FROM socialsync_migrations WHERE success";
        let probe: Result<(Option<i64>,), sqlx::Error> =
            on_pool!(self, p => sqlx::query_as(sql).fetch_one(p).await);
        match probe {
            Ok((v,)) => Ok(v),
            // The table does not exist yet: nothing applied.
            Err(sqlx::Error::Database(e)) if is_undefined_table(e.as_ref()) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The newest applied migration of apalis' queue tables (in sqlx's `_sqlx_migrations`, which
    /// apalis-postgres keeps in its own schema), or `None` before the first.
    pub async fn queue_schema_version(&self) -> Result<Option<i64>> {
        let table = self.pool.pick("apalis._sqlx_migrations", "_sqlx_migrations");
        let sql = format!("SELECT MAX(version) FROM {table} WHERE success");
        let probe: Result<(Option<i64>,), sqlx::Error> = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_one(p).await);
        match probe {
            Ok((v,)) => Ok(v),
            Err(sqlx::Error::Database(e)) if is_undefined_table(e.as_ref()) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn close(&self) {
        on_pool!(self, p => p.close().await)
    }
}

/// A PostgreSQL connection in words: the server's version and the transport, e.g.
/// "PostgreSQL 15.20 over TCP to 127.0.0.1 with TLS (TLSv1.3)" or "… over a Unix socket".
/// A client's default `sslmode=prefer` takes TLS whenever the server offers it, loopback too.
pub async fn describe_postgres(conn: &mut PgConnection) -> Result<String> {
    let (version, tls, host): (String, Option<String>, Option<String>) = sqlx::query_as(
        "SELECT current_setting('server_version'),
            (SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl),
            host(inet_server_addr())",
    )
    .fetch_one(conn)
    .await?;
    let transport = match (host, tls) {
        (None, _) => "a Unix socket".to_owned(),
        (Some(h), Some(tls)) => format!("TCP to {h} with TLS ({tls})"),
        (Some(h), None) => format!("TCP to {h} without TLS"),
    };
    Ok(format!("PostgreSQL {version} over {transport}"))
}

fn is_undefined_table(e: &dyn sqlx::error::DatabaseError) -> bool {
    e.code().as_deref() == Some("42P01") || e.message().contains("no such table")
}
