//! The schema, embedded in the binary.
//!
//! Two migrators run per database: apalis' own (its queue tables, tracked in sqlx's default
//! `_sqlx_migrations`) and socialsync's domain tables (tracked in `socialsync_migrations`, so the
//! two histories never collide). Both take sqlx's migration lock, so any number of processes
//! may start at once; a second run is a no-op.
//!
//! apalis-sqlite's `setup()` is deliberately not called: it turns `synchronous` OFF on a
//! connection, and socialsync's SQLite must not lose an acknowledged job (see `jobs::store`).

use sqlx::{PgPool, SqlitePool, migrate::Migrator};

pub use sqlx::migrate::MigrateError;

/// The table that records socialsync's own migrations.
pub const TABLE: &str = "socialsync_migrations";

fn named(mut m: Migrator) -> Migrator {
    m.dangerous_set_table_name(TABLE);
    m
}

pub fn postgres_domain() -> Migrator {
    named(sqlx::migrate!("./postgres"))
}

pub fn sqlite_domain() -> Migrator {
    named(sqlx::migrate!("./sqlite"))
}

/// The newest domain migration version; a database is ready when it has applied it.
pub fn latest_version() -> i64 {
    let pg = postgres_domain().iter().map(|m| m.version).max().unwrap_or(0);
    let lite = sqlite_domain().iter().map(|m| m.version).max().unwrap_or(0);
    debug_assert_eq!(pg, lite, "both backends carry the same migrations");
    pg.max(lite)
}

/// The newest migration of apalis' own queue tables (PostgreSQL's, or SQLite's): a database is
/// ready when it has applied that too.
pub fn queue_latest(postgres: bool) -> i64 {
    let m = if postgres { apalis_postgres::PostgresStorage::migrations() } else { apalis_sqlite::SqliteStorage::migrations() };
    m.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Applies apalis' and socialsync's PostgreSQL migrations.
pub async fn run_postgres(pool: &PgPool) -> Result<(), MigrateError> {
    run_postgres_until(pool, i64::MAX).await
}

/// Applies apalis' and socialsync's SQLite migrations.
pub async fn run_sqlite(pool: &SqlitePool) -> Result<(), MigrateError> {
    run_sqlite_until(pool, i64::MAX).await
}

/// Applies apalis' migrations and socialsync's up to version `last`: a database as an older
/// release left it, for testing an upgrade.
pub async fn run_postgres_until(pool: &PgPool, last: i64) -> Result<(), MigrateError> {
    apalis_postgres::PostgresStorage::migrations().run(pool).await?;
    until(postgres_domain(), last).run(pool).await
}

/// [`run_postgres_until`] for SQLite.
pub async fn run_sqlite_until(pool: &SqlitePool, last: i64) -> Result<(), MigrateError> {
    apalis_sqlite::SqliteStorage::migrations().run(pool).await?;
    until(sqlite_domain(), last).run(pool).await
}

fn until(mut m: Migrator, last: i64) -> Migrator {
    if last < i64::MAX {
        m.migrations = m.migrations.iter().filter(|m| m.version <= last).cloned().collect::<Vec<_>>().into();
    }
    m
}

#[cfg(test)]
mod tests {
    #[test]
    fn backends_carry_the_same_versions() {
        let pg: Vec<_> = super::postgres_domain().iter().map(|m| (m.version, m.description.clone())).collect();
        let lite: Vec<_> = super::sqlite_domain().iter().map(|m| (m.version, m.description.clone())).collect();
        assert_eq!(pg, lite);
        assert!(super::latest_version() >= 1);
    }
}
