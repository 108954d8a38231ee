//! A month of history: N accounts' jobs, run records, snapshots, notifications and cron firings
//! written by SQL a day at a time (two finished jobs and two run records per account a day, a
//! snapshot, a notification for one account in a hundred), on a clock 31 days behind.
//!
//! "Day 1" is the database after one day; claim, enqueue and dashboard latencies are measured
//! there. Then days 2–30 are written and one pruner pass runs at day 30 (the first pass over a
//! month: it deletes 23 days of finished jobs), `VACUUM ANALYZE` stands in for autovacuum, and
//! the same latencies are measured again against day 1's. Day 31 is written and pruned like any
//! day; the tables' sizes after it against day 30's show whether they stay flat.

use std::time::{Duration, Instant};

use jobs::{
    AccountId, Store, Timestamp,
    retention::{self, Retention},
    store::claims,
    sync,
};
use sqlx::PgPool;

use crate::{Figure, median};

const DAY_MS: i64 = 86_400_000;

/// A ULID for a creation time (ms) and a number: the 10 characters of the time as the ulid
/// crate writes them, then the number. Job ids are ULIDs, and the pruner relies on it.
const ULID_FN: &str = "
CREATE FUNCTION bench_ulid(ms bigint, r bigint) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT (SELECT string_agg(substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> (5 * (9 - k))) & 31)::int + 1, 1), '' ORDER BY k) FROM generate_series(0, 9) k)
      || '000' || (SELECT string_agg(substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((r >> (5 * (12 - k))) & 31)::int + 1, 1), '' ORDER BY k) FROM generate_series(0, 12) k)
$$";

/// One day of history from `$1` (the day's start, ms): per account a refresh at its second of
/// the day and a sync at its second after 03:00 (created, as the sweep creates them, in the
/// 03:00 firing's second), each done with its run record; a snapshot; notifications;
/// the day's firings (the two sweeps and the pruner every ten minutes).
const DAY_SQL: [&str; 5] = [
    "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority, last_result, done_at, dedup_key)
     SELECT bench_ulid(c, a.id * 2 + q.o), q.name, convert_to('{\"account_id\":' || a.id || '}', 'UTF8'), 'Done', 1, 5,
        to_timestamp(t / 1000.0), 0, '{\"Ok\": null}'::jsonb, to_timestamp((t + 800) / 1000.0), q.name || ':' || a.id
     FROM social_accounts a, (VALUES ('refresh', 0), ('sync', 1)) AS q(name, o), LATERAL (SELECT $1 + (a.id % 80000) * 1000 + q.o * 10800000 AS t) tt,
        LATERAL (SELECT CASE WHEN q.o = 1 THEN $1 + 10800000 + a.id % 1000 ELSE t END AS c) cc",
    "INSERT INTO job_runs (queue, job_id, account_id, attempt, worker, started_at, finished_at, outcome, error_class)
     SELECT q.name, bench_ulid(c, a.id * 2 + q.o), a.id, 1, 'bench', t + 100, t + 800,
        CASE WHEN a.id % 50 = 0 THEN 'retrying' ELSE 'succeeded' END, CASE WHEN a.id % 50 = 0 THEN 'rate_limited' END
     FROM social_accounts a, (VALUES ('refresh', 0), ('sync', 1)) AS q(name, o), LATERAL (SELECT $1 + (a.id % 80000) * 1000 + q.o * 10800000 AS t) tt,
        LATERAL (SELECT CASE WHEN q.o = 1 THEN $1 + 10800000 + a.id % 1000 ELSE t END AS c) cc",
    "INSERT INTO account_snapshots (account_id, taken_at, followers_count, following_count, media_count, likes_count)
     SELECT a.id, $1 + 10800000 + (a.id % 80000) * 1000 + 900, 1000 + a.id, 100, 50, 10000 FROM social_accounts a",
    "INSERT INTO notifications (user_id, account_id, kind, payload, created_at, delivered_at, attempts)
     SELECT a.user_id, a.id, 'reauth_required', '{}', $1 + a.id % 80000, $1 + a.id % 80000 + 500, 1 FROM social_accounts a WHERE a.id % 100 = 0",
    "INSERT INTO cron_runs (schedule, fire_at, claimed_by, claimed_at, finished_at, jobs_enqueued, outcome)
     SELECT s.name, $1 + s.at, 'bench', $1 + s.at, $1 + s.at + 1000, CASE WHEN s.name = 'data_sync' THEN (SELECT COUNT(*) FROM social_accounts) ELSE 0 END, 'succeeded'
     FROM (SELECT 'token_refresh' AS name, 7200000::bigint AS at UNION ALL SELECT 'data_sync', 10800000
           UNION ALL SELECT 'prune', m * 600000 FROM generate_series(0, 143) m) s",
];

/// The tables history grows, as the pruner sees them.
const TABLES: [&str; 6] = ["apalis.jobs", "job_runs", "account_snapshots", "notifications", "cron_runs", "job_run_hours"];

async fn write_day(pool: &PgPool, start: Timestamp) {
    for sql in DAY_SQL {
        sqlx::query(sql).bind(start.millis()).execute(pool).await.expect("a day of history");
    }
}

/// Rows and bytes (with indexes) of each of [`TABLES`].
async fn sizes(pool: &PgPool) -> Vec<(&'static str, i64, i64)> {
    let mut out = vec![];
    for t in TABLES {
        let sql = format!("SELECT COUNT(*), pg_total_relation_size('{t}') FROM {t}");
        let (rows, bytes): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_one(pool).await.expect("sized");
        out.push((t, rows, bytes));
    }
    out
}

/// The latencies compared between day 1 and day 30: (what, median).
async fn latencies(store: &Store, pool: &PgPool, base: &str) -> Vec<(&'static str, Duration)> {
    const ROUNDS: usize = 50;
    let worker = "bench-history.sync";
    claims::register_worker(pool, worker, sync::KIND).await.expect("registered");
    let mut claim = vec![];
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let got = claims::claim(pool, worker, sync::KIND, 1, &[]).await.expect("claimed");
        claim.push(t.elapsed());
        let done: Vec<_> = got
            .into_iter()
            .map(|c| claims::Success {
                job_id: c.id,
                worker: worker.into(),
                attempt: c.attempt,
                at: Timestamp::now(),
                run: Err(claims::WholeRun { account_id: None, worker: worker.into(), started_at: Timestamp::now() }),
            })
            .collect();
        assert_eq!(done.len(), 1, "a pending sync to claim");
        claims::acknowledge(pool, sync::KIND, &done).await.expect("acknowledged");
    }
    claim.sort();
    let mut next = 50_000_000;
    let enqueue = median(ROUNDS, || {
        next += 1;
        let job = sync::job(AccountId(next), sync::SyncReason::Manual, Timestamp::now());
        async move {
            store.enqueue(&job).await.expect("enqueued");
        }
    })
    .await;
    let http = reqwest::Client::new();
    let mut out = vec![("claim one job", claim[claim.len() / 2]), ("enqueue one job", enqueue)];
    for (name, path) in [("dashboard overview", "/"), ("dashboard job list", "/jobs"), ("dashboard health", "/health"), ("dashboard cron", "/cron")] {
        let t = median(5, || {
            let url = format!("{base}{path}");
            let http = http.clone();
            async move {
                let resp = http.get(&url).send().await.expect("the dashboard answers");
                assert_eq!(resp.status(), 200, "{url}");
                resp.bytes().await.expect("a page");
            }
        })
        .await;
        out.push((name, t));
    }
    out
}

pub async fn run(accounts: i64) -> Vec<Figure> {
    let (db, store, pool) = crate::database().await;
    sqlx::query(ULID_FN).execute(&pool).await.expect("the ULID function");
    sqlx::query(
        "INSERT INTO social_accounts (user_id, platform, platform_user_id, username, status, status_changed_at, created_at, updated_at)
         SELECT 'user-' || i, CASE WHEN i % 2 = 0 THEN 'instagram' ELSE 'tiktok' END, 'puid-' || i, 'creator' || i, 'active', 0, 0, 0
         FROM generate_series(1, $1) AS i",
    )
    .bind(accounts)
    .execute(&pool)
    .await
    .expect("accounts");
    let jobs: Vec<_> = (0..2_000).map(|i| sync::job(AccountId(40_000_000 + i), sync::SyncReason::Manual, Timestamp::now())).collect();
    for chunk in jobs.chunks(1000) {
        store.enqueue_many(chunk).await.expect("pending syncs to claim");
    }
    // The dashboard recomputes its overview on every request (a frame is older than 1 ms).
    let (base, _sandbox) = crate::dashboard::serve(&store, Duration::from_millis(1)).await;
    let first = Timestamp::now().day_start().minus(Duration::from_secs(31 * 86_400));
    let day = |n: i64| Timestamp(first.millis() + (n - 1) * DAY_MS);
    let keep = Retention::default();
    let vacuum = || async { sqlx::query("VACUUM ANALYZE").execute(&pool).await.expect("vacuumed") };

    write_day(&pool, day(1)).await;
    retention::prune(&store, &keep, day(2), retention::BATCH).await.expect("a pass at day 1");
    vacuum().await;
    let day1 = latencies(&store, &pool, &base).await;

    let t = Instant::now();
    for n in 2..=30 {
        write_day(&pool, day(n)).await;
    }
    let written = t.elapsed();
    vacuum().await;
    let before = sizes(&pool).await;
    let t = Instant::now();
    let pass = retention::prune(&store, &keep, day(31), retention::BATCH).await.expect("the pass at day 30");
    let pass_took = t.elapsed();
    vacuum().await;
    let after = sizes(&pool).await;
    let day30 = latencies(&store, &pool, &base).await;

    write_day(&pool, day(31)).await;
    let t = Instant::now();
    let daily = retention::prune(&store, &keep, day(32), retention::BATCH).await.expect("the pass at day 31");
    let daily_took = t.elapsed();
    vacuum().await;
    let day31 = sizes(&pool).await;
    drop(db);

    let mut figures = vec![
        Figure::time(
            format!("history: first pruner pass at day 30, {accounts} accounts ({} rows removed)", pass.total()),
            pass_took,
            "writing days 2–30 by SQL",
            written,
            "",
        ),
        Figure::time(format!("history: the pass after day 31 ({} rows removed)", daily.total()), daily_took, "the first pass, at day 30", pass_took, ""),
    ];
    for ((name, d30), (_, d1)) in day30.iter().zip(&day1) {
        figures.push(Figure::time(format!("history: {name} at day 30, {accounts} accounts"), *d30, "the same at day 1", *d1, "within 10 % of day 1"));
    }
    for (((table, rows_before, bytes_before), (_, rows, bytes)), (_, rows31, bytes31)) in before.iter().zip(&after).zip(&day31) {
        let mib = |b: i64| b as f64 / 1_048_576.0;
        figures.push(Figure {
            name: format!("history: {table} at day 30 after the pass ({rows} rows; {rows_before} before it)"),
            value: mib(*bytes),
            baseline_name: format!("before the pass ({rows_before} rows)"),
            baseline: mib(*bytes_before),
            unit: "MiB",
            target: String::new(),
        });
        figures.push(Figure {
            name: format!("history: {table} at day 31 after its pass ({rows31} rows)"),
            value: mib(*bytes31),
            baseline_name: format!("day 30 after the pass ({rows} rows)"),
            baseline: mib(*bytes),
            unit: "MiB",
            target: "flat once past retention".into(),
        });
    }
    figures
}
