//! Statements that find rows by key from arrays (PostgreSQL) find them by key on a table that
//! was empty when the connection first ran them. A pooled connection keeps its prepared
//! statements, and PostgreSQL keeps a generic plan until the table's statistics change — never,
//! without autovacuum (this machine's server runs without it): a run-record end first planned
//! on an empty table went on joining every later group to a scan of the whole table. Each test
//! runs its statement once on the empty table, fills it, and counts the sequential scans the
//! next run makes.

use std::time::Duration;

use jobs::{
    AccountId, Store, Timestamp,
    store::{JobAction, JobOutcome, JobRunEnd, Pool, RateHit, Selection},
    sync,
};
use testkit::{Backend, TestDb};

/// A store with one connection, whose kept statements are planned generically from the start
/// (as PostgreSQL may choose to after five runs).
async fn one_connection(db: &TestDb) -> Store {
    let mut config = testkit::db_config(&db.url);
    config.max_connections = 1;
    let store = Store::connect(&config).await.unwrap();
    let Pool::Postgres(pool) = store.pool() else { unreachable!("a PostgreSQL store") };
    sqlx::query("SET plan_cache_mode = force_generic_plan").execute(pool).await.unwrap();
    store
}

/// How many sequential scans of `table` `store`'s connection has made.
async fn seq_scans(store: &Store, table: &str) -> i64 {
    let Pool::Postgres(pool) = store.pool() else { unreachable!("a PostgreSQL store") };
    let mut conn = pool.acquire().await.unwrap();
    // A backend reports its counters when idle, at most once a second unless told to.
    sqlx::query("SELECT pg_stat_force_next_flush()").execute(&mut *conn).await.unwrap();
    sqlx::query_scalar("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = $1").bind(table).fetch_one(&mut *conn).await.unwrap()
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


    let before = seq_scans(&store, "job_runs").await;
    let end = JobRunEnd { id: 5, outcome: JobOutcome::Dead, error_class: Some("permanent".into()), error: None, at: Timestamp(7) };
    store.finish_job_runs(&[end]).await.unwrap();
    assert_eq!(seq_scans(&store, "job_runs").await, before, "a run's end must not scan the table");
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


    let before = seq_scans(&store, "rate_limit_counters").await;
    let answers = store.hit_rate_limits_reading(&[hit]).await.unwrap();
    assert_eq!(seq_scans(&store, "rate_limit_counters").await, before, "the guard's read must not scan the counters");
    assert_eq!(answers[0].0.0, 2, "the second hit in the window");
}

#[tokio::test]
async fn a_dashboard_action_on_ids_planned_on_an_empty_table_still_finds_its_jobs_by_key() {
    let db = TestDb::new(Backend::Postgres).await;
    let store = one_connection(&db).await;
    let cancel = |ids: Vec<String>| {
        let store = store.clone();
        async move { store.act_on_jobs(JobAction::Cancel, &Selection::Ids(ids), Timestamp::now()).await.unwrap() }
    };
    assert_eq!(cancel(vec!["01NONE".into()]).await, 0);
    let jobs: Vec<_> = (0..20_000).map(|i| sync::job(AccountId(i), sync::SyncReason::Manual, Timestamp::now())).collect();
    for chunk in jobs.chunks(5_000) {
        db.store.enqueue_many(chunk).await.unwrap();
    }
    let one = db.store.enqueue(&sync::job(AccountId(99_999), sync::SyncReason::Manual, Timestamp::now())).await.unwrap().id;

    let before = seq_scans(&store, "jobs").await;
    assert_eq!(cancel(vec![one]).await, 1);
    assert_eq!(seq_scans(&store, "jobs").await, before, "an action on one job must not scan the queue table");
}

/// The scans of `table` in an `EXPLAIN (FORMAT JSON)` plan, as (node type, index name).
fn scans_of(plan: &serde_json::Value, table: &str, out: &mut Vec<(String, Option<String>)>) {
    let node_type = plan["Node Type"].as_str().unwrap_or_default();
    if plan["Relation Name"] == table && node_type != "ModifyTable" {
        out.push((node_type.to_owned(), plan["Index Name"].as_str().map(str::to_owned)));
    }
    for child in plan["Plans"].as_array().into_iter().flatten() {
        scans_of(child, table, out);
    }
}

/// An enqueue's look-up of the job waiting under its key: on a queue table that has never been
/// analysed (autovacuum off) and holds 100 000 waiting jobs, the custom and the generic plan
/// alike find it through the dedup index. Asserted on the plan, not on a time: without
/// statistics the look-up once chose apalis' claim index and read every waiting row.
#[tokio::test]
async fn the_dedup_look_up_plans_on_the_dedup_index_without_statistics() {
    let db = TestDb::new(Backend::Postgres).await;
    fill(&db, "ALTER TABLE apalis.jobs SET (autovacuum_enabled = false)").await;
    let now = Timestamp::now();
    let jobs: Vec<_> = (0..100_000).map(|i| sync::job(AccountId(i), sync::SyncReason::Nightly, now.minus(Duration::from_secs(60)))).collect();
    for chunk in jobs.chunks(10_000) {
        db.store.enqueue_many(chunk).await.unwrap();
    }
    let Pool::Postgres(pool) = db.store.pool() else { unreachable!("a PostgreSQL store") };
    let mut conn = pool.acquire().await.unwrap();
    let (tuples, analysed): (f32, bool) = sqlx::query_as(
        "SELECT c.reltuples, s.last_analyze IS NOT NULL OR s.last_autoanalyze IS NOT NULL
         FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.oid = 'apalis.jobs'::regclass",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert!(tuples < 0.0 && !analysed, "the table has no statistics (reltuples {tuples}, analysed {analysed})");

    let prepare = format!("PREPARE enqueue (text, text, bytea, int4, int8, text, text, int8) AS {}", db.store.enqueue_statement());
    sqlx::raw_sql(sqlx::AssertSqlSafe(prepare)).execute(&mut *conn).await.unwrap();
    for mode in ["force_custom_plan", "force_generic_plan"] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET plan_cache_mode = {mode}"))).execute(&mut *conn).await.unwrap();
        let explain = format!("EXPLAIN (FORMAT JSON) EXECUTE enqueue ('01NEW', 'sync', '\\x7b7d', 5, {}, 'sync:500', 'sync sync:500', 500)", now.millis());
        let plan: serde_json::Value = sqlx::query_scalar(sqlx::AssertSqlSafe(explain)).fetch_one(&mut *conn).await.unwrap();
        let mut scans = vec![];
        scans_of(&plan[0]["Plan"], "jobs", &mut scans);
        assert!(!scans.is_empty(), "{mode}: the look-up reads apalis.jobs: {plan}");
        for (node, index) in &scans {
            assert_eq!(index.as_deref(), Some("socialsync_jobs_dedup_key"), "{mode}: the look-up's {node} must use the dedup index: {plan:#}");
        }
    }
    // And the statement finds the waiting job: the request is answered by it.
    let found = db.store.enqueue(&sync::job(AccountId(500), sync::SyncReason::Manual, now)).await.unwrap();
    assert!(!found.created, "the waiting job stands for the request");
    assert_eq!(db.store.waiting_job(sync::KIND, Some(&sync::dedup_key(AccountId(500)))).await.unwrap(), Some(found.id));
}

/// SQLite, with no `ANALYZE` ever run: the same look-up searches the dedup index.
#[tokio::test]
async fn the_sqlite_dedup_look_up_searches_the_dedup_index() {
    let db = TestDb::new(Backend::Sqlite).await;
    let now = Timestamp::now();
    let jobs: Vec<_> = (0..20_000).map(|i| sync::job(AccountId(i), sync::SyncReason::Nightly, now)).collect();
    db.store.enqueue_many(&jobs).await.unwrap();
    let Pool::Sqlite(pool) = db.store.pool() else { unreachable!("a SQLite store") };
    let explain = format!("EXPLAIN QUERY PLAN {}", db.store.enqueue_statement());
    let steps: Vec<(i64, i64, i64, String)> =
        sqlx::query_as(sqlx::AssertSqlSafe(explain)).bind("sync sync:500").bind(now.millis()).fetch_all(pool).await.unwrap();
    let detail: Vec<&str> = steps.iter().map(|s| s.3.as_str()).collect();
    assert_eq!(detail, ["SEARCH Jobs USING INDEX socialsync_jobs_dedup_key (<expr>=?)"], "{detail:?}");
}
