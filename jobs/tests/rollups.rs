//! Roll-ups on PostgreSQL and on SQLite from one body: the Health page's and the overview's
//! figures read the same after the pruner has rolled the raw records up and deleted them.

use std::time::Duration;

use jobs::{
    AccountId, AccountStatus, Platform, Store, Timestamp,
    retention::{self, Retention},
    store::{INACTIVE_COUNTER, JobOutcome, JobRunEnding, JobRunStart},
    store::JobFilter,
    sweeps::{self, SYNC_SWEEP},
    sync::{self, SyncReason},
    time::OffsetClock,
};
use testkit::{account, both_backends, platform::SandboxServer};

const DAY: Duration = Duration::from_secs(86_400);
const HOUR: Duration = Duration::from_secs(3_600);

/// One finished attempt to record.
struct Run {
    queue: &'static str,
    /// When its job was created (its ULID id's time): a sync created while a sweep ran is the sweep's.
    created: Timestamp,
    account: AccountId,
    start: Timestamp,
    took: Duration,
    outcome: JobOutcome,
    rate_limited: bool,
}

async fn record(store: &Store, runs: &[Run]) {
    let ids: Vec<String> = runs.iter().enumerate().map(|(i, r)| ulid::Ulid::from_parts(r.created.millis() as u64, i as u128).to_string()).collect();
    let ends: Vec<JobRunEnding> = runs
        .iter()
        .map(|r| JobRunEnding {
            outcome: r.outcome,
            error_class: r.rate_limited.then(|| "rate_limited".into()),
            error: None,
            at: r.start.plus(r.took),
        })
        .collect();
    let rows: Vec<_> = runs
        .iter()
        .zip(&ids)
        .zip(&ends)
        .map(|((r, id), end)| (JobRunStart { queue: r.queue, job_id: id, account_id: Some(r.account), attempt: 1, worker: "w" }, r.start, Some(end)))
        .collect();
    store.record_job_runs(&rows).await.unwrap();
}

/// Everything the Health page and the overview's daily chart show since `since`.
#[derive(Debug, PartialEq)]
struct Figures {
    refresh: Vec<jobs::store::DayOutcomes>,
    sync: Vec<jobs::store::DayOutcomes>,
    per_day: Vec<(Timestamp, i64, i64)>,
    limited: Vec<(Timestamp, i64)>,
    nightly: Vec<jobs::store::NightlySync>,
}

async fn figures(store: &Store, since: Timestamp) -> Figures {
    Figures {
        refresh: store.outcomes_per_day("refresh", since).await.unwrap(),
        sync: store.outcomes_per_day("sync", since).await.unwrap(),
        per_day: store.attempts_per_day(since).await.unwrap(),
        limited: store.platform_429s_per_hour(since).await.unwrap(),
        nightly: store.nightly_syncs(SYNC_SWEEP, since).await.unwrap(),
    }
}

async fn run_count(store: &Store) -> i64 {
    let sql = "SELECT COUNT(*) FROM job_runs";
    match store.pool() {
        jobs::store::Pool::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
        jobs::store::Pool::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
    }
}

both_backends! {
    async fn figures_are_the_same_after_their_records_are_pruned(db: TestDb) {
        let s = &db.store;
        let now = Timestamp::now();
        let ig = account(s, Platform::Instagram, "ig", now).await;
        let tt = account(s, Platform::Tiktok, "tt", now).await;
        // 40 days of history, varied per day: refreshes (some dead, some rate-limited) across
        // the day, and a nightly sync firing at 03:00 with its syncs on both platforms.
        let mut runs = vec![];
        for d in 1..=40u32 {
            let day = now.minus(DAY * d).day_start();
            for h in 0..(d % 4 + 2) {
                let outcome = [JobOutcome::Succeeded, JobOutcome::Retrying, JobOutcome::Dead, JobOutcome::Succeeded][(h + d) as usize % 4];
                let account = if h % 2 == 0 { ig } else { tt };
                runs.push(Run { queue: "refresh", account, created: day.plus(HOUR * (h * 5)), start: day.plus(HOUR * (h * 5)), took: Duration::from_millis(300), outcome, rate_limited: outcome != JobOutcome::Succeeded && d % 3 == 0 });
            }
            let fire_at = day.plus(HOUR * 3);
            let claimed = fire_at.plus(Duration::from_secs(2));
            assert!(s.claim_cron_run(SYNC_SWEEP, fire_at, "w", claimed).await.unwrap());
            s.finish_cron_run(SYNC_SWEEP, fire_at, Some(i64::from(d % 5 + 1)), "succeeded", None, claimed.plus(Duration::from_secs(1))).await.unwrap();
            for i in 0..(d % 5 + 1) {
                let account = if i % 3 == 0 { tt } else { ig };
                let outcome = if i == 4 { JobOutcome::Retrying } else { JobOutcome::Succeeded };
                let created = claimed.plus(Duration::from_millis(u64::from(i) * 100));
                runs.push(Run { queue: "sync", account, created, start: claimed.plus(Duration::from_secs(u64::from(i) * 2)), took: Duration::from_secs(u64::from(d)), outcome, rate_limited: outcome == JobOutcome::Retrying });
            }
            // A sync requested by hand an hour later, which the sweep did not enqueue: not its.
            let by_hand = claimed.plus(HOUR);
            runs.push(Run { queue: "sync", account: ig, created: by_hand, start: by_hand, took: HOUR, outcome: JobOutcome::Succeeded, rate_limited: false });
        }
        // And the last minutes, not yet rolled up.
        runs.push(Run { queue: "sync", account: ig, created: now.minus(Duration::from_secs(120)), start: now.minus(Duration::from_secs(120)), took: Duration::from_secs(1), outcome: JobOutcome::Succeeded, rate_limited: false });
        runs.push(Run { queue: "refresh", account: tt, created: now.minus(Duration::from_secs(60)), start: now.minus(Duration::from_secs(60)), took: Duration::from_secs(1), outcome: JobOutcome::Retrying, rate_limited: true });
        record(s, &runs).await;

        let since = now.minus(DAY * 45).day_start();
        let raw = figures(s, since).await;
        assert_eq!(raw.nightly.len(), 40, "{:?}", raw.nightly);
        for n in &raw.nightly {
            let d = ((now.day_start().millis() - n.fire_at.day_start().millis()) / 86_400_000) as u32;
            let syncs = d % 5 + 1;
            let ig = (0..syncs).filter(|i| i % 3 != 0 && *i != 4).count() as i64;
            let tt = (0..syncs).filter(|i| i % 3 == 0 && *i != 4).count() as i64;
            assert_eq!((n.instagram_syncs, n.tiktok_syncs, n.jobs_enqueued), (ig, tt, Some(i64::from(syncs))), "day -{d}: {n:?}");
            let last = n.claimed_at.plus(Duration::from_secs(u64::from(syncs - 1) * 2 + u64::from(d)));
            assert_eq!(n.last_finished, Some(last), "day -{d}");
        }
        assert!(raw.refresh.iter().any(|d| d.dead > 0 && d.rate_limited > 0), "{:?}", raw.refresh);
        let before = run_count(s).await;

        let report = retention::prune(s, &Retention::default(), now, retention::BATCH).await.unwrap();
        let pruned = report.removed["job_runs"];
        assert!(pruned > 0, "runs older than 30 days go: {report:?}");
        assert_eq!(run_count(s).await, before - pruned as i64);
        assert!(s.retention_mark(jobs::store::ROLLED_UP).await.unwrap().is_some_and(|m| m > now.minus(HOUR * 2)));
        assert_eq!(figures(s, since).await, raw, "the roll-ups give what the raw records gave");

        // A later pass prunes more and still changes no figure; an attempt that ends now counts.
        let later = now.plus(DAY);
        let report = retention::prune(s, &Retention::default(), later, retention::BATCH).await.unwrap();
        assert!(report.removed["job_runs"] > 0, "{report:?}");
        assert_eq!(figures(s, since).await, raw);
        record(s, &[Run { queue: "refresh", account: ig, created: later, start: later, took: Duration::from_secs(1), outcome: JobOutcome::Dead, rate_limited: false }]).await;
        let today = s.outcomes_per_day("refresh", later.day_start()).await.unwrap();
        let raw_today = raw.refresh.iter().find(|d| d.day == later.day_start()).copied().unwrap_or_default();
        assert_eq!(today.last().map(|d| d.dead), Some(raw_today.dead + 1), "{today:?}");
    }

    async fn a_sync_firing_is_credited_with_the_syncs_it_enqueued_alone(db: TestDb) {
        let s = &db.store;
        let now = Timestamp::now();
        let (ig, tt) = (account(s, Platform::Instagram, "ig", now).await, account(s, Platform::Tiktok, "tt", now).await);
        // A sync of a third account already waits: the sweep's is deduplicated into it.
        let waiting = account(s, Platform::Instagram, "waiting", now).await;
        let queued = s.enqueue(&sync::job(waiting, SyncReason::Manual, now.plus(HOUR))).await.unwrap();
        // On a clock two days behind (CLOCK_OFFSET_SECS), where job ids keep the system's.
        let sandbox = SandboxServer::start().await;
        let mut cx = testkit::job_context(s, &sandbox.platforms(Duration::from_secs(5)));
        cx.clock = std::sync::Arc::new(OffsetClock::by_secs(-2 * 86_400));
        let fire_at = cx.now();
        assert!(s.claim_cron_run(SYNC_SWEEP, fire_at, "w", fire_at).await.unwrap());
        assert_eq!(sweeps::run_claimed(&cx, SYNC_SWEEP, fire_at, sweeps::CHUNK).await.unwrap().jobs, Some(2));
        // A sync of an account connected after the sweep: not the sweep's either (once the
        // clock has left the millisecond the sweep ended in, the last its ids may have).
        let ended = Timestamp::now();
        while Timestamp::now() <= ended {
            tokio::task::yield_now().await;
        }
        let late = account(s, Platform::Tiktok, "late", now).await;
        let late_sync = s.enqueue(&sync::job(late, SyncReason::Connect, now)).await.unwrap();
        let mut syncs = s.search_jobs(&JobFilter { queue: Some("sync".into()), ..JobFilter::default() }, None, 10).await.unwrap();
        syncs.retain(|j| j.id != queued.id && j.id != late_sync.id);
        assert_eq!(syncs.len(), 2, "{syncs:?}");
        // Each ran once and succeeded, the two that are not the sweep's last.
        let mut runs = vec![(queued.id.clone(), waiting, now.plus(HOUR)), (late_sync.id.clone(), late, now.plus(HOUR))];
        for (i, j) in syncs.iter().enumerate() {
            let account = if j.dedup_key == Some(sync::dedup_key(ig)) { ig } else { tt };
            runs.push((j.id.clone(), account, now.plus(Duration::from_secs(i as u64 + 1))));
        }
        let ending = |at: Timestamp| JobRunEnding { outcome: JobOutcome::Succeeded, error_class: None, error: None, at: at.plus(Duration::from_secs(1)) };
        let ends: Vec<_> = runs.iter().map(|(_, _, at)| ending(*at)).collect();
        let rows: Vec<_> = runs
            .iter()
            .zip(&ends)
            .map(|((id, account, at), end)| (JobRunStart { queue: "sync", job_id: id, account_id: Some(*account), attempt: 1, worker: "w" }, *at, Some(end)))
            .collect();
        s.record_job_runs(&rows).await.unwrap();
        let nightly = s.nightly_syncs(SYNC_SWEEP, fire_at.minus(DAY)).await.unwrap();
        assert_eq!(nightly.len(), 1, "{nightly:?}");
        let n = &nightly[0];
        assert_eq!((n.jobs_enqueued, n.instagram_syncs, n.tiktok_syncs), (Some(2), 1, 1), "{n:?}");
        assert_eq!(n.last_finished, Some(now.plus(Duration::from_secs(3))), "the other syncs' ends are not the sweep's");
    }

    async fn runs_not_yet_rolled_up_are_never_pruned(db: TestDb) {
        let s = &db.store;
        let now = Timestamp::now();
        let ig = account(s, Platform::Instagram, "ig", now).await;
        record(s, &[Run { queue: "sync", account: ig, created: now.minus(HOUR * 2), start: now.minus(HOUR * 2), took: Duration::from_secs(1), outcome: JobOutcome::Succeeded, rate_limited: false }]).await;
        // Runs kept only an hour: the last 25 hours' records still stay, for the roll-ups.
        let keep = Retention { job_runs: Some(HOUR), ..Retention::default() };
        let report = retention::prune(s, &keep, now, retention::BATCH).await.unwrap();
        assert_eq!(report.removed["job_runs"], 0, "{report:?}");
        let report = retention::prune(s, &keep, now.plus(DAY * 2), retention::BATCH).await.unwrap();
        assert_eq!(report.removed["job_runs"], 1, "{report:?}");
        let rolled = s.outcomes_per_day("sync", now.minus(DAY).day_start()).await.unwrap();
        assert_eq!(rolled.iter().map(|d| d.succeeded).sum::<i64>(), 1, "{rolled:?}");
    }

    async fn accounts_that_became_inactive_are_counted_when_they_do(db: TestDb) {
        let s = &db.store;
        let now = Timestamp::now();
        let mut ids = vec![];
        for i in 0..9 {
            ids.push(account(s, if i % 2 == 0 { Platform::Instagram } else { Platform::Tiktok }, &format!("a{i}"), now.minus(DAY * 60)).await);
        }
        // Seven leave active at times spread over eight weeks, in three ways; two stay active.
        let statuses = [AccountStatus::ReauthRequired, AccountStatus::Revoked, AccountStatus::Disconnected];
        for (i, id) in ids.iter().take(7).enumerate() {
            let at = now.minus(DAY * (i as u32 * 8 + 1));
            assert!(s.set_account_status(*id, statuses[i % 3], at).await.unwrap());
            // Setting an inactive status again is no new departure.
            s.set_account_status(*id, statuses[i % 3], at.plus(HOUR)).await.unwrap();
        }
        let since = now.minus(DAY * 70).week_start();
        let mut raw: Vec<(Timestamp, i64)> = vec![];
        for id in &ids {
            let a = s.account(*id).await.unwrap().unwrap();
            if a.status != AccountStatus::Active {
                let w = a.status_changed_at.week_start();
                match raw.iter_mut().find(|(at, _)| *at == w) {
                    Some((_, n)) => *n += 1,
                    None => raw.push((w, 1)),
                }
            }
        }
        raw.sort();
        let mut counted: Vec<(Timestamp, i64)> = vec![];
        for (hour, n) in s.counter_hours(INACTIVE_COUNTER, since).await.unwrap() {
            match counted.last_mut() {
                Some((w, total)) if *w == hour.week_start() => *total += n,
                _ => counted.push((hour.week_start(), n)),
            }
        }
        assert_eq!(raw.iter().map(|(_, n)| n).sum::<i64>(), 7);
        assert_eq!(counted, raw, "the counter per week is the accounts per week of their change");
        // Reconnected and gone again: two departures, where the account's row shows one.
        let back = account(s, Platform::Instagram, "a0", now).await;
        assert_eq!(back, ids[0]);
        assert!(s.set_account_status(back, AccountStatus::Revoked, now).await.unwrap());
        let total: i64 = s.counter_hours(INACTIVE_COUNTER, since).await.unwrap().iter().map(|(_, n)| n).sum();
        assert_eq!(total, 8);
    }
}
