//! Pauses on PostgreSQL and on SQLite from one body: stored, replaced, expired and resumed; on
//! PostgreSQL every change is announced when it commits, and a claim passes over a paused
//! platform's jobs by the platform each job carries.

use std::time::Duration;

use jobs::{
    AccountId, Platform, Timestamp,
    pauses::{Pause, Target},
    store::{PAUSES_CHANNEL, Pool, claims},
    sync::{self, SyncReason},
};
use testkit::both_backends;

both_backends! {
    async fn pauses_hold_until_resumed_or_their_end(db: TestDb) {
        let s = &db.store;
        let now = Timestamp::now();
        let listener = match s.pool() {
            Pool::Postgres(p) => {
                let mut l = sqlx::postgres::PgListener::connect_with(p).await.unwrap();
                l.listen(PAUSES_CHANNEL).await.unwrap();
                Some(l)
            }
            Pool::Sqlite(_) => None,
        };
        assert!(s.pauses(now).await.unwrap().is_empty());
        let sync = Pause::new(Target::Queue("sync"), "ana", "TikTok outage", now, None);
        let sweep = Pause::new(Target::Schedule("data_sync"), "ana", "migration tonight", now, Some(Duration::from_secs(1800)));
        s.pause(&sync).await.unwrap();
        s.pause(&sweep).await.unwrap();
        assert_eq!(s.pauses(now).await.unwrap(), vec![sync.clone(), sweep.clone()], "by scope");
        // Past its end a pause holds no more; pausing again replaces who, why and the end.
        assert_eq!(s.pauses(now.plus(Duration::from_secs(1800))).await.unwrap(), vec![sync.clone()]);
        let again = Pause::new(Target::Queue("sync"), "bo", "still down", now.plus(Duration::from_secs(60)), Some(Duration::from_secs(600)));
        s.pause(&again).await.unwrap();
        assert_eq!(s.pauses(now).await.unwrap(), vec![again.clone(), sweep.clone()]);
        assert_eq!(s.resume(&again.scope).await.unwrap(), Some(again.clone()), "resume returns what it ended");
        assert_eq!(s.resume(&again.scope).await.unwrap(), None, "nothing left to resume");
        assert_eq!(s.pauses(now).await.unwrap(), vec![sweep.clone()]);
        if let Some(mut l) = listener {
            // Two pauses, a replacement and a resume that ended one: each announced with its
            // scope; the resume of nothing announces nothing.
            let mut heard = vec![];
            for _ in 0..4 {
                let n = tokio::time::timeout(Duration::from_secs(5), l.recv()).await.expect("announced").unwrap();
                heard.push(n.payload().to_owned());
            }
            assert_eq!(heard, ["queue:sync", "schedule:data_sync", "queue:sync", "queue:sync"]);
            assert!(tokio::time::timeout(Duration::from_millis(300), l.recv()).await.is_err(), "no fifth");
        }
    }
}

/// PostgreSQL: a job about an account carries its platform from its enqueueing (one by one and
/// in a sweep's batch), and a claim passing over a paused platform takes the others' jobs in
/// their order, leaving the paused ones pending, uncounted, first in line once resumed.
#[tokio::test]
async fn a_claim_passes_over_a_paused_platform_s_jobs() {
    let db = testkit::TestDb::new(testkit::Backend::Postgres).await;
    let Pool::Postgres(pool) = db.store.pool() else { unreachable!("a PostgreSQL store") };
    let now = Timestamp::now();
    let ago = |s: u64| now.minus(Duration::from_secs(s));
    let mut tiktok = vec![];
    let mut instagram = vec![];
    for i in 0..6 {
        tiktok.push(testkit::account(&db.store, Platform::Tiktok, &format!("tt{i}"), now).await);
        instagram.push(testkit::account(&db.store, Platform::Instagram, &format!("ig{i}"), now).await);
    }
    // TikTok's syncs are due first; one enqueued alone, the rest in a batch; a job about no
    // account (or an account that does not exist) has no platform and is never passed over.
    db.store.enqueue(&sync::job(tiktok[0], SyncReason::Manual, ago(600))).await.unwrap();
    let spaced = |accounts: &[AccountId], from: u64| accounts.iter().enumerate().map(|(i, a)| sync::job(*a, SyncReason::Nightly, ago(from - i as u64))).collect::<Vec<_>>();
    let batch: Vec<_> = spaced(&tiktok[1..], 500).into_iter().chain(spaced(&instagram, 400)).collect();
    db.store.enqueue_many(&batch).await.unwrap();
    db.store.enqueue(&sync::job(AccountId(999_999), SyncReason::Manual, ago(300))).await.unwrap();
    let platforms: Vec<(Option<String>, i64)> =
        sqlx::query_as("SELECT platform, COUNT(*) FROM apalis.jobs WHERE job_type = 'sync' GROUP BY 1 ORDER BY 1").fetch_all(pool).await.unwrap();
    assert_eq!(platforms, [(Some("instagram".into()), 6), (Some("tiktok".into()), 6), (None, 1)]);

    claims::register_worker(pool, "w.sync", sync::KIND).await.unwrap();
    let first = claims::claim(pool, "w.sync", sync::KIND, 4, &[Platform::Tiktok]).await.unwrap();
    // The claimed set, by account (a claim returns its rows in no particular order).
    let accounts = |c: &[claims::Claimed]| {
        let mut ids = c.iter().map(|j| AccountId(j.payload["account_id"].as_i64().unwrap())).collect::<Vec<_>>();
        ids.sort();
        ids
    };
    assert_eq!(accounts(&first), instagram[..4], "Instagram's, oldest first: {first:?}");
    assert!(first.iter().all(|j| j.platform == Some(Platform::Instagram) && j.attempt == 1));
    let rest = claims::claim(pool, "w.sync", sync::KIND, 10, &[Platform::Tiktok]).await.unwrap();
    assert_eq!(accounts(&rest), [instagram[4], instagram[5], AccountId(999_999)], "then the rest, and the job about no known account");
    assert!(claims::claim(pool, "w.sync", sync::KIND, 10, &[Platform::Tiktok]).await.unwrap().is_empty(), "nothing but TikTok's is left");
    let waiting: Vec<(String, i32, Option<String>)> =
        sqlx::query_as("SELECT status, attempts, lock_by FROM apalis.jobs WHERE platform = 'tiktok'").fetch_all(pool).await.unwrap();
    assert!(waiting.iter().all(|w| *w == ("Pending".into(), 0, None)), "untouched: {waiting:?}");
    // Resumed: TikTok's, in their order.
    let resumed = claims::claim(pool, "w.sync", sync::KIND, 2, &[]).await.unwrap();
    assert_eq!(accounts(&resumed), tiktok[..2]);
}

/// PostgreSQL: the upgrade to migration 0015 gives the jobs already waiting their platform, and
/// leaves a payload it cannot read alone.
#[tokio::test]
async fn the_upgrade_gives_waiting_jobs_their_platform() {
    let db = testkit::TestDb::empty(testkit::Backend::Postgres).await;
    let Pool::Postgres(pool) = db.store.pool() else { unreachable!("a PostgreSQL store") };
    migrations::run_postgres_until(pool, 14).await.unwrap();
    let now = Timestamp::now();
    let tt = testkit::account(&db.store, Platform::Tiktok, "tt", now).await;
    let ig = testkit::account(&db.store, Platform::Instagram, "ig", now).await;
    for (id, job, status) in [("01A", format!(r#"{{"account_id":{},"reason":"nightly"}}"#, tt.0), "Pending"), ("01B", format!(r#"{{"account_id":{}}}"#, ig.0), "Failed"), ("01C", format!(r#"{{"account_id":{}}}"#, ig.0), "Done"), ("01D", "not json".into(), "Pending")] {
        sqlx::query("INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority) VALUES ($1, 'sync', $2, $3, 0, 5, now(), 0)")
            .bind(id)
            .bind(job.into_bytes())
            .bind(status)
            .execute(pool)
            .await
            .unwrap();
    }
    db.migrate().await;
    let platforms: Vec<(String, Option<String>)> = sqlx::query_as("SELECT id, platform FROM apalis.jobs ORDER BY id").fetch_all(pool).await.unwrap();
    assert_eq!(platforms, [("01A".into(), Some("tiktok".into())), ("01B".into(), Some("instagram".into())), ("01C".into(), None), ("01D".into(), None)], "a finished job is left as it was");
}
