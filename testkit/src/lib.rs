//! Gives every test its own database, so tests run in parallel and never see each other's rows.
//!
//! PostgreSQL: a uniquely named database on the server at `TEST_DATABASE_URL` (default
//! `postgres://root@127.0.0.1:5432/postgres`; `scripts/test` finds or starts one), dropped when
//! the [`TestDb`] is dropped. SQLite: a real file in a temporary folder. Both are migrated
//! exactly as `socialsync migrate` does.
//!
//! [`both_backends!`] turns one test body into a `postgres` and a `sqlite` test.

use std::{
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use jobs::{
    Secret, Store,
    config::DatabaseConfig,
    store::Pool,
};
use sqlx::{Connection, PgConnection};

pub mod cluster;
pub mod platform;
pub mod scan;

pub use tempfile;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// The PostgreSQL server tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/postgres".into())
}

/// A fresh, migrated database, removed on drop.
pub struct TestDb {
    pub store: Store,
    /// The URL a separate process (a `socialsync` binary under test) can use.
    pub url: String,
    pub backend: Backend,
    pg_name: Option<String>,
    /// The server's admin URL, for dropping the database.
    admin: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Postgres => Self::postgres().await,
            Backend::Sqlite => Self::sqlite().await,
        }
    }

    /// A database that exists but has no tables yet (for testing `migrate` itself).
    pub async fn empty(backend: Backend) -> TestDb {
        let (url, pg_name, dir) = match backend {
            Backend::Postgres => {
                let (url, name) = create_pg_database(&postgres_admin_url()).await;
                (url, Some(name), None)
            }
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("a temporary folder");
                let url = format!("sqlite://{}", dir.path().join("socialsync.db").display());
                (url, None, Some(dir))
            }
        };
        let store = Store::connect(&db_config(&url)).await.expect("the test database opens");
        TestDb { store, url, backend, pg_name, admin: postgres_admin_url(), _dir: dir }
    }

    /// A fresh, migrated database on the PostgreSQL server at `admin` (e.g. a [`cluster::Cluster`]).
    pub async fn postgres_on(admin: &str) -> TestDb {
        let (url, name) = create_pg_database(admin).await;
        let store = Store::connect(&db_config(&url)).await.expect("the test database opens");
        let db = TestDb { store, url, backend: Backend::Postgres, pg_name: Some(name), admin: admin.to_owned(), _dir: None };
        db.migrate().await;
        db
    }

    async fn postgres() -> TestDb {
        let db = Self::empty(Backend::Postgres).await;
        db.migrate().await;
        db
    }

    async fn sqlite() -> TestDb {
        let db = Self::empty(Backend::Sqlite).await;
        db.migrate().await;
        db
    }

    pub async fn migrate(&self) {
        match self.store.pool() {
            Pool::Postgres(p) => migrations::run_postgres(p).await,
            Pool::Sqlite(p) => migrations::run_sqlite(p).await,
        }
        .expect("migrations apply");
    }
}

/// Waits until `check` holds, polling every 100 ms; panics naming `what` after `limit`.
/// (Awaiting a condition, never sleeping a fixed time and hoping.)
pub async fn eventually<F, Fut>(limit: Duration, what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "timed out after {limit:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether every one of `ids` satisfies `pred` (for [`eventually`] over many accounts).
pub async fn all_accounts(store: &Store, ids: &[jobs::AccountId], pred: impl Fn(&jobs::store::Account) -> bool) -> bool {
    for id in ids {
        match store.account(*id).await.expect("the store answers") {
            Some(a) if pred(&a) => {}
            _ => return false,
        }
    }
    true
}

/// The configuration a process under test would get for `url`.
/// Connects (or reconnects) an account of `platform` with platform user id and username
/// `puid` for user `u1`, at `now`, its access token sealed with a throw-away key.
pub async fn account(store: &Store, platform: jobs::Platform, puid: &str, now: jobs::Timestamp) -> jobs::AccountId {
    let v = jobs::Vault::new(jobs::VaultKey::parse(jobs::VaultKey::generate().expose()).unwrap(), vec![]);
    let a = jobs::store::NewAccount {
        user_id: "u1".into(),
        platform,
        platform_user_id: puid.into(),
        username: puid.into(),
        display_name: None,
        scopes: String::new(),
        access_token: v.seal(&jobs::Aad::account(platform, puid, "access_token"), &Secret::from("act")),
        refresh_token: None,
        access_expires_at: now.plus(Duration::from_secs(86_400)),
        refresh_expires_at: None,
        next_refresh_at: None,
    };
    store.upsert_account(&a, now).await.unwrap().id
}

pub fn db_config(url: &str) -> DatabaseConfig {
    DatabaseConfig {
        url: Secret::from(url),
        max_connections: 5,
        acquire_timeout: Duration::from_secs(10),
    }
}

async fn create_pg_database(admin: &str) -> (String, String) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "ss_test_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        jobs::vault::random_bytes::<4>().iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let mut conn = PgConnection::connect(admin).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at {admin} ({e}). Run the tests with scripts/test, \
             which finds or starts PostgreSQL, or set TEST_DATABASE_URL."
        )
    });
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("CREATE DATABASE");
    let _ = conn.close().await;
    (with_database(admin, &name), name)
}

/// `admin` with its database path replaced by `name`.
fn with_database(admin: &str, name: &str) -> String {
    let (base, query) = admin.split_once('?').map_or((admin, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else { return };
        // Drop runs outside async; a short-lived runtime on its own thread does the cleanup.
        let admin = self.admin.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(&admin).await.ok()?;
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.ok()
            })
        })
        .join();
    }
}

/// A job context on `store` with the sandbox's platforms, a fresh vault, the system clock and
/// default settings (tests adjust the fields they care about).
pub fn job_context(store: &Store, platforms: &jobs::config::PlatformsConfig) -> jobs::job::JobContext {
    jobs::job::JobContext {
        store: store.clone(),
        vault: jobs::Vault::new(jobs::VaultKey::parse(jobs::VaultKey::generate().expose()).expect("a fresh key parses"), vec![]),
        clients: jobs::clients::Clients::new(platforms),
        clock: std::sync::Arc::new(jobs::SystemClock),
        settings: jobs::job::JobSettings::default(),
        worker: "test-process".into(),
        http: reqwest::Client::new(),
        local_gates: Default::default(),
        paused: Default::default(),
    }
}

/// Declares each `async fn name(db: TestDb) { … }` twice: as `name::postgres` and
/// `name::sqlite`, each with a fresh migrated database.
#[macro_export]
macro_rules! both_backends {
    ($(async fn $name:ident($db:ident: TestDb) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let $db = $crate::TestDb::new($crate::Backend::Postgres).await;
                $body
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let $db = $crate::TestDb::new($crate::Backend::Sqlite).await;
                $body
            }
        }
    )*};
}

#[cfg(test)]
mod tests {
    #[test]
    fn swaps_the_database_name() {
        assert_eq!(super::with_database("postgres://root@127.0.0.1:5432/postgres", "x"), "postgres://root@127.0.0.1:5432/x");
        assert_eq!(super::with_database("postgres://u:p@h/db?sslmode=disable", "x"), "postgres://u:p@h/x?sslmode=disable");
        assert_eq!(super::with_database("postgres://h", "x"), "postgres://h/x");
    }
}
