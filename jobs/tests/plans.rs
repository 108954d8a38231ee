//! Statements that find rows by key from arrays (PostgreSQL) keep using the key in the plan a
//! connection cached while the table was small. A pooled connection keeps its prepared
//! statements, and PostgreSQL keeps a generic plan until the table's statistics change — never,
//! without autovacuum (this machine's server runs without it). A run-record end planned on an
//! empty table went on joining every later group to a scan of the whole table.

use std::time::Duration;

use jobs::{
    Store, Timestamp,
    store::{JobOutcome, JobRunEnd, Pool, RateHit},
};
use testkit::{Backend, TestDb};

/// A store with one connection, whose statements are planned generically from the start.
async fn one_connection(db: &TestDb) -> Store {
    let mut config = testkit::db_config(&db.url);
    config.max_connections = 1;
    let store = Store::connect(&config).await.unwrap();
    let Pool::Postgres(pool) = store.pool() else { unreachable!("a PostgreSQL store") };
    sqlx::query("SET plan_cache_mode = force_generic_plan").execute(pool).await.unwrap();
    store
}

/// The plan `store`'s connection keeps for its prepared statement containing `marker`, run
/// with `args`.
async fn cached_plan(store: &Store, marker: &str, args: &str) -> String {
    let Pool::Postgres(pool) = store.pool() else { unreachable!("a PostgreSQL store") };
    let mut conn = pool.acquire().await.unwrap();
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM pg_prepared_statements WHERE strpos(statement, $1) > 0")
        .bind(marker)
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    assert_eq!(names.len(), 1, "one prepared statement containing {marker:?}");
    let plan: Vec<String> =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN EXECUTE {}({args})", names[0]))).fetch_all(&mut *conn).await.unwrap();
    plan.join("\n")
}

async fn fill(db: &TestDb, sql: &str) {
    let Pool::Postgres(pool) = db.store.pool() else { unreachable!("a PostgreSQL store") };
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(pool).await.unwrap();
}

#[tokio::test]
async fn a_run_end_planned_on_an_empty_table_still_finds_its_row_by_key() {
    let db = TestDb::new(Backend::Postgres).await;
    let store = one_connection(&db).await;
    let end = JobRunEnd { id: 1, outcome: JobOutcome::Succeeded, error_class: None, error: None, at: Timestamp::now() };
    store.finish_job_runs(&[end]).await.unwrap();
    fill(&db, "INSERT INTO job_runs (queue, job_id, attempt, worker, started_at) SELECT 'sync', g::text, 1, 'w', g FROM generate_series(1, 20000) g").await;

    let plan = cached_plan(&store, "UPDATE job_runs SET finished_at", "'{5}', '{1}', '{succeeded}', '{NULL}', '{NULL}'").await;
    assert!(plan.contains("job_runs_pkey"), "a run's end is found by its key:\n{plan}");
    assert!(!plan.contains("Seq Scan on job_runs"), "a run's end must not scan the table:\n{plan}");
    // And the end is written.
    let end = JobRunEnd { id: 5, outcome: JobOutcome::Dead, error_class: Some("permanent".into()), error: None, at: Timestamp(7) };
    store.finish_job_runs(&[end]).await.unwrap();
    let runs = store.job_runs("5").await.unwrap();
    assert_eq!((runs[0].outcome, runs[0].finished_at), (Some(JobOutcome::Dead), Some(Timestamp(7))));
}

#[tokio::test]
async fn a_guard_read_planned_on_an_empty_table_still_finds_its_counters_by_key() {
    let db = TestDb::new(Backend::Postgres).await;
    let store = one_connection(&db).await;
    let now = Timestamp::now();
    let hit = RateHit {
        key: "ip:1".into(),
        window_start: now,
        previous_start: now.minus(Duration::from_secs(60)),
        expires_at: now.plus(Duration::from_secs(120)),
        read: "lockout:1".into(),
        read_windows: (now, now.minus(Duration::from_secs(60))),
    };
    store.hit_rate_limits_reading(std::slice::from_ref(&hit)).await.unwrap();
    fill(&db, "INSERT INTO rate_limit_counters (key, window_start, count, expires_at) SELECT 'ip:' || g, 0, 1, 1 FROM generate_series(2, 20001) g").await;

    let plan = cached_plan(&store, "rate_limit_counters c JOIN", "'{ip:1}', '{0}', '{1}', '{1}', '{ip:1,lockout:1}', '{0,0}'").await;
    assert!(!plan.contains("Seq Scan on rate_limit_counters"), "the guard's read must not scan the counters:\n{plan}");
    // And it still counts: the second hit in the window reads 2.
    let answers = store.hit_rate_limits_reading(&[hit]).await.unwrap();
    assert_eq!(answers[0].0.0, 2);
}
