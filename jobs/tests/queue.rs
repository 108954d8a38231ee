//! Enqueueing into apalis' tables on both backends: ids, run times, dedup of waiting jobs.

use jobs::{Timestamp, store::NewJob};
use serde_json::json;
use testkit::both_backends;

fn job(key: Option<&str>, run_at: Timestamp) -> NewJob {
    NewJob { queue: "sync", payload: json!({ "account_id": 7 }), run_at, max_attempts: 5, dedup_key: key.map(str::to_owned) }
}

both_backends! {
    async fn enqueue_returns_the_waiting_job_for_a_duplicate(db: TestDb) {
        let at = Timestamp::from_secs(1_900_000_000);
        let first = db.store.enqueue(&job(Some("sync:7"), at)).await.unwrap();
        assert!(first.created);
        let again = db.store.enqueue(&job(Some("sync:7"), at)).await.unwrap();
        assert_eq!((again.id.as_str(), again.created), (first.id.as_str(), false));
        let other = db.store.enqueue(&job(Some("sync:8"), at)).await.unwrap();
        assert!(other.created && other.id != first.id);
        let free = db.store.enqueue(&job(None, at)).await.unwrap();
        assert!(free.created, "no key, no dedup");

        let row = db.store.job_row(&first.id).await.unwrap().unwrap();
        assert_eq!((row.queue.as_str(), row.status.as_str(), row.attempts, row.max_attempts), ("sync", "Pending", 0, 5));
        assert_eq!(row.run_at, at);
        assert_eq!(row.payload_json(), json!({ "account_id": 7 }));
        assert_eq!(row.dedup_key.as_deref(), Some("sync:7"));
        assert_eq!(db.store.queue_counts("sync").await.unwrap(), vec![("Pending".to_string(), 3)]);
    }

    async fn a_duplicate_asking_earlier_moves_the_waiting_job_earlier(db: TestDb) {
        let late = Timestamp::from_secs(1_900_000_000);
        let early = Timestamp::from_secs(1_800_000_000);
        let first = db.store.enqueue(&job(Some("sync:7"), late)).await.unwrap();
        let again = db.store.enqueue(&job(Some("sync:7"), early)).await.unwrap();
        assert_eq!((again.id.as_str(), again.created), (first.id.as_str(), false));
        assert_eq!(db.store.job_row(&first.id).await.unwrap().unwrap().run_at, early);
        db.store.enqueue(&job(Some("sync:7"), late)).await.unwrap();
        assert_eq!(db.store.job_row(&first.id).await.unwrap().unwrap().run_at, early, "never later");
        let batch = vec![job(Some("sync:7"), Timestamp::from_secs(1_700_000_000)), job(Some("sync:7"), late)];
        assert_eq!(db.store.enqueue_many(&batch).await.unwrap(), 0);
        assert_eq!(db.store.job_row(&first.id).await.unwrap().unwrap().run_at, Timestamp::from_secs(1_700_000_000));
    }

    async fn enqueue_many_takes_a_sweep_page_and_skips_waiting_duplicates(db: TestDb) {
        let at = Timestamp::from_secs(1_900_000_000);
        db.store.enqueue(&job(Some("sync:1"), at)).await.unwrap();
        // Two sweep pages' worth of distinct keys, each twice: more parameters than one SQLite
        // statement may bind (32 766, six a row).
        let keys = 2 * jobs::sweeps::CHUNK as usize;
        let batch: Vec<_> = (0..2 * keys).map(|i| job(Some(&format!("sync:{}", i % keys)), at)).collect();
        assert_eq!(db.store.enqueue_many(&batch).await.unwrap(), keys as u64 - 1, "one key already waiting");
        assert_eq!(db.store.queue_counts("sync").await.unwrap(), vec![("Pending".to_string(), keys as i64)]);
        assert_eq!(db.store.enqueue_many(&[]).await.unwrap(), 0);
    }

    async fn a_job_never_runs_before_the_time_it_asked_for(db: TestDb) {
        // PostgreSQL keeps milliseconds; SQLite's run_at is whole seconds, rounded up.
        let asked = Timestamp(1_900_000_000_300);
        let stored = match db.backend {
            testkit::Backend::Postgres => asked,
            testkit::Backend::Sqlite => Timestamp(1_900_000_001_000),
        };
        let one = db.store.enqueue(&job(Some("sync:7"), asked)).await.unwrap();
        assert_eq!(db.store.job_row(&one.id).await.unwrap().unwrap().run_at, stored);
        let again = db.store.enqueue(&job(Some("sync:7"), asked)).await.unwrap();
        assert_eq!((again.id.as_str(), again.created), (one.id.as_str(), false), "the same moment is no earlier");
        assert_eq!(db.store.enqueue_many(&[job(Some("sync:8"), asked)]).await.unwrap(), 1);
        let many = db.store.waiting_job("sync", Some("sync:8")).await.unwrap().unwrap();
        assert_eq!(db.store.job_row(&many).await.unwrap().unwrap().run_at, stored);
    }

    async fn ending_an_attempt_needs_the_lock(db: TestDb) {
        let e = db.store.enqueue(&job(None, Timestamp::from_secs(1))).await.unwrap();
        let end = jobs::store::AttemptEnd::Killed { error: "x".into() };
        assert!(!db.store.end_attempt(&e.id, "nobody", 1, &end).await.unwrap());
        assert_eq!(db.store.job_row(&e.id).await.unwrap().unwrap().status, "Pending");
    }
}

/// A repeated request for a job already waiting and due no later writes nothing: it is
/// answered while another transaction holds the waiting row locked (an upsert would wait for
/// that lock, as concurrent repeats of one key once queued on each other's commits).
#[tokio::test]
async fn a_repeat_due_no_earlier_is_answered_without_the_waiting_row_lock() {
    let db = testkit::TestDb::new(testkit::Backend::Postgres).await;
    let jobs::store::Pool::Postgres(pool) = db.store.pool() else { unreachable!("a PostgreSQL store") };
    let at = Timestamp::from_secs(1_900_000_000);
    let first = db.store.enqueue(&job(Some("sync:7"), at)).await.unwrap();
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM apalis.jobs WHERE id = $1 FOR UPDATE").bind(&first.id).execute(&mut *holder).await.unwrap();

    for run_at in [at, Timestamp::from_secs(1_950_000_000)] {
        let again = tokio::time::timeout(std::time::Duration::from_secs(10), db.store.enqueue(&job(Some("sync:7"), run_at)))
            .await
            .expect("answered while the waiting job is locked")
            .unwrap();
        assert_eq!((again.id.as_str(), again.created), (first.id.as_str(), false));
    }
    holder.rollback().await.unwrap();
}
