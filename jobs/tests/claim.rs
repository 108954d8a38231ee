//! apalis' claim function as socialsync's migration 0004 redefines it (PostgreSQL): the same
//! jobs claimed, and with a backlog no claim scans the whole table. And migration 0005: a job
//! that leaves its claim leaves its worker's `lock_by`. And the claim loop's statements
//! (`jobs::store::claims`): claim, grouped acknowledgement with run records, rescue.

use std::time::Duration;

use jobs::{
    AccountId, Timestamp,
    store::{
        JobRunStart, Pool,
        claims::{self, Success, WholeRun},
    },
    sync,
};
use testkit::{Backend, TestDb};

#[tokio::test]
async fn a_claim_takes_the_due_jobs_by_key_even_with_a_backlog() {
    let db = TestDb::new(Backend::Postgres).await;
    let Pool::Postgres(pool) = db.store.pool() else { unreachable!("a PostgreSQL store") };
    let now = Timestamp::now();
    let due = |i: i64, ago: u64| sync::job(AccountId(i), sync::SyncReason::Manual, now.minus(Duration::from_secs(ago)));
    // A backlog of 20 000 due syncs, plus one due earlier than all of them and one not due yet.
    let mut backlog: Vec<_> = (0..20_000).map(|i| due(100 + i, 60)).collect();
    backlog.push(due(1, 3600));
    backlog.push(sync::job(AccountId(2), sync::SyncReason::Manual, now.plus(Duration::from_secs(3600))));
    for chunk in backlog.chunks(5_000) {
        db.store.enqueue_many(chunk).await.unwrap();
    }
    sqlx::query("ANALYZE apalis.jobs").execute(pool).await.unwrap();

    // The function's own statement, planned as PostgreSQL plans it inside the function: with
    // its arguments as parameters (a generic plan).
    let body: String = sqlx::query_scalar("SELECT prosrc FROM pg_proc WHERE proname = 'get_jobs' AND pronamespace = 'apalis'::regnamespace")
        .fetch_one(pool)
        .await
        .unwrap();
    let statement = body.replace("worker_id", "$1").replace("v_job_type", "$2").replace("v_job_count", "$3");
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SET plan_cache_mode = force_generic_plan").execute(&mut *conn).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("PREPARE claim(text, text, int) AS {statement}"))).execute(&mut *conn).await.unwrap();
    let plan: Vec<String> = sqlx::query_scalar("EXPLAIN EXECUTE claim('w1', 'sync', 16)").fetch_all(&mut *conn).await.unwrap();
    let plan = plan.join("\n");
    assert!(!plan.contains("Seq Scan"), "a claim must not scan the table:\n{plan}");

    // And it claims what apalis' did: the earliest due first, never one not yet due.
    sqlx::query("INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen) VALUES ('w1', 'sync', 'PgStorage', '', now())")
        .execute(pool)
        .await
        .unwrap();
    let claimed: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT convert_from(job, 'UTF8'), status, lock_by FROM apalis.get_jobs('w1', 'sync', 3)").fetch_all(pool).await.unwrap();
    assert_eq!(claimed.len(), 3);
    assert!(claimed.iter().all(|(_, status, by)| status == "Queued" && by.as_deref() == Some("w1")));
    assert!(claimed.iter().any(|(job, ..)| job.contains(r#""account_id":1,"#)), "the earliest due job is claimed: {claimed:?}");
    assert!(!claimed.iter().any(|(job, ..)| job.contains(r#""account_id":2,"#)), "a job not due is not");
}

#[tokio::test]
async fn a_job_leaving_its_claim_leaves_its_worker_too() {
    let db = TestDb::new(Backend::Postgres).await;
    let Pool::Postgres(pool) = db.store.pool() else { unreachable!("a PostgreSQL store") };
    let jobs: Vec<_> = (0..3).map(|i| sync::job(AccountId(i), sync::SyncReason::Manual, Timestamp::now().minus(Duration::from_secs(1)))).collect();
    db.store.enqueue_many(&jobs).await.unwrap();
    sqlx::query("INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen) VALUES ('w1', 'sync', 'PgStorage', '', now())")
        .execute(pool)
        .await
        .unwrap();
    let claimed: Vec<String> = sqlx::query_scalar("SELECT id FROM apalis.get_jobs('w1', 'sync', 3) ORDER BY id").fetch_all(pool).await.unwrap();
    assert_eq!(claimed.len(), 3);
    // apalis' acknowledgements: a success, a failure to retry; the third job still runs.
    for (id, status) in [(&claimed[0], "Done"), (&claimed[1], "Failed")] {
        let n = sqlx::query("UPDATE apalis.jobs SET status = $2, done_at = now() WHERE id = $1 AND lock_by = 'w1'")
            .bind(id)
            .bind(status)
            .execute(pool)
            .await
            .unwrap()
            .rows_affected();
        assert_eq!(n, 1, "acknowledged while locked by w1");
    }
    let held: Vec<String> = sqlx::query_scalar("SELECT id FROM apalis.jobs WHERE lock_by = 'w1'").fetch_all(pool).await.unwrap();
    assert_eq!(held, vec![claimed[2].clone()], "only the running job is filed under its worker");
}

#[tokio::test]
async fn the_queue_table_has_no_twin_indexes_and_files_only_claimed_jobs_by_worker() {
    let db = TestDb::new(Backend::Postgres).await;
    let Pool::Postgres(pool) = db.store.pool() else { unreachable!("a PostgreSQL store") };
    // Migration 0006: every claim and end of a job writes an entry to each full index.
    let twins: Vec<String> = sqlx::query_scalar(
        "SELECT string_agg(indexrelid::regclass::text, ' = ') FROM pg_index WHERE indrelid = 'apalis.jobs'::regclass
         GROUP BY indkey::text, indclass::text, coalesce(pg_get_expr(indpred, indrelid), ''), coalesce(pg_get_expr(indexprs, indrelid), '')
         HAVING count(*) > 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(twins.is_empty(), "indexes with the same definition: {twins:?}");
    let predicate = |index: &'static str| {
        sqlx::query_scalar::<_, Option<String>>("SELECT pg_get_expr(indpred, indrelid) FROM pg_index WHERE indexrelid = $1::regclass")
            .bind(index)
            .fetch_one(pool)
    };
    assert_eq!(predicate("apalis.socialsync_jobs_lock_by").await.unwrap().as_deref(), Some("(lock_by IS NOT NULL)"));
    assert_eq!(predicate("apalis.socialsync_jobs_idempotency_key").await.unwrap().as_deref(), Some("(idempotency_key IS NOT NULL)"));

    // The partial index still serves a worker's jobs...
    let jobs: Vec<_> = (0..2).map(|i| sync::job(AccountId(i), sync::SyncReason::Manual, Timestamp::now())).collect();
    db.store.enqueue_many(&jobs).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SET enable_seqscan = off").execute(&mut *conn).await.unwrap();
    let plan: Vec<String> = sqlx::query_scalar("EXPLAIN SELECT id FROM apalis.jobs WHERE lock_by = 'w1'").fetch_all(&mut *conn).await.unwrap();
    assert!(plan.join("\n").contains("socialsync_jobs_lock_by"), "{plan:?}");
    // ...and idempotency keys stay unique.
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM apalis.jobs ORDER BY id").fetch_all(pool).await.unwrap();
    let key = |id: &str| sqlx::query("UPDATE apalis.jobs SET idempotency_key = 'k' WHERE id = $1").bind(id.to_owned()).execute(pool);
    key(&ids[0]).await.unwrap();
    let second = key(&ids[1]).await.expect_err("a second job with the same key");
    assert!(second.to_string().contains("socialsync_jobs_idempotency_key"), "{second}");
}

#[tokio::test]
async fn the_claim_loop_acknowledges_in_groups_with_run_records_and_rescues_the_dead() {
    let db = TestDb::new(Backend::Postgres).await;
    let Pool::Postgres(pool) = db.store.pool() else {
        unreachable!("a PostgreSQL store")
    };
    let jobs: Vec<_> = (0..5)
        .map(|i| {
            sync::job(
                AccountId(i),
                sync::SyncReason::Manual,
                Timestamp::now().minus(Duration::from_secs(1)),
            )
        })
        .collect();
    db.store.enqueue_many(&jobs).await.unwrap();
    claims::register_worker(pool, "p.sync", sync::KIND)
        .await
        .unwrap();
    claims::register_worker(pool, "dead.sync", sync::KIND)
        .await
        .unwrap();
    let mine = claims::claim(pool, "p.sync", sync::KIND, 3, &[]).await.unwrap();
    let theirs = claims::claim(pool, "dead.sync", sync::KIND, 10, &[])
        .await
        .unwrap();
    assert_eq!(
        (mine.len(), theirs.len()),
        (3, 2),
        "each claims what is due and not claimed"
    );
    assert!(
        mine.iter()
            .all(|c| c.attempt == 1 && c.payload["account_id"].is_i64()),
        "{mine:?}"
    );

    // One attempt had its start recorded (a long one), one is recorded whole; the third was
    // rescued meanwhile (here: released by hand) and is not acknowledged.
    let started = db
        .store
        .start_job_run(
            &JobRunStart {
                queue: sync::KIND,
                job_id: &mine[0].id,
                account_id: Some(AccountId(0)),
                attempt: 1,
                worker: "p",
            },
            Timestamp(1_000),
        )
        .await
        .unwrap();
    sqlx::query("UPDATE apalis.jobs SET status = 'Pending', lock_by = NULL WHERE id = $1")
        .bind(&mine[2].id)
        .execute(pool)
        .await
        .unwrap();
    let success = |c: &claims::Claimed, run| Success {
        job_id: c.id.clone(),
        worker: "p.sync".into(),
        attempt: c.attempt,
        at: Timestamp(2_000),
        run,
    };
    let whole = WholeRun {
        account_id: Some(AccountId(1)),
        worker: "p".into(),
        started_at: Timestamp(1_500),
    };
    let done = [
        success(&mine[0], Ok(started)),
        success(&mine[1], Err(whole.clone())),
        success(&mine[2], Err(whole)),
    ];
    assert_eq!(
        claims::acknowledge(pool, sync::KIND, &done).await.unwrap(),
        vec![true, true, false]
    );

    let rows: Vec<(String, i32, Option<String>)> = sqlx::query_as(
        "SELECT status, attempts, lock_by FROM apalis.jobs WHERE id = ANY($1) ORDER BY id",
    )
    .bind(vec![mine[0].id.clone(), mine[1].id.clone()])
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![("Done".into(), 1, None), ("Done".into(), 1, None)]
    );
    for (c, started_at) in [(&mine[0], 1_000), (&mine[1], 1_500), (&mine[2], 1_500)] {
        let runs = db.store.job_runs(&c.id).await.unwrap();
        assert_eq!(runs.len(), 1, "one record per attempt: {runs:?}");
        let r = &runs[0];
        assert_eq!(
            (
                r.started_at,
                r.finished_at,
                r.outcome.map(|o| o.as_str()),
                r.attempt
            ),
            (
                Timestamp(started_at),
                Some(Timestamp(2_000)),
                Some("succeeded"),
                1
            )
        );
    }

    // The dead worker's jobs go back once it has been silent long enough, its attempt counted.
    assert_eq!(
        claims::rescue_orphans(pool, &[sync::KIND], Duration::from_secs(60))
            .await
            .unwrap(),
        0,
        "not silent long enough"
    );
    sqlx::query(
        "UPDATE apalis.workers SET last_seen = now() - interval '1 minute' WHERE id = 'dead.sync'",
    )
    .execute(pool)
    .await
    .unwrap();
    assert_eq!(
        claims::rescue_orphans(pool, &[sync::KIND], Duration::from_secs(30))
            .await
            .unwrap(),
        2
    );
    let again = claims::claim(pool, "p.sync", sync::KIND, 10, &[]).await.unwrap();
    let mut ids: Vec<_> = again.iter().map(|c| (c.id.clone(), c.attempt)).collect();
    ids.sort();
    let mut expected = vec![
        (mine[2].id.clone(), 1),
        (theirs[0].id.clone(), 2),
        (theirs[1].id.clone(), 2),
    ];
    expected.sort();
    assert_eq!(
        ids, expected,
        "the released job and the dead worker's two, their lost attempt counted"
    );
}
