//! The nightly schedules across three workers, with their clocks set to cross 02:00 and 03:00.

use std::time::Duration;

use jobs::Timestamp;
use testkit::{
    Backend, TestDb,
    platform::SandboxServer,
};

use crate::{
    report,
    support::{Proc, fleet::{Fleet, take_turn}},
};

// 5 ─────────────────────────────────────────────────────────────────────────────────────────────

/// `hour`:00 UTC today, or yesterday if that is still ahead.
fn latest(hour: u32) -> chrono::DateTime<chrono::Utc> {
    let now = chrono::Utc::now();
    let today = now.date_naive().and_hms_opt(hour, 0, 0).unwrap().and_utc();
    if today <= now { today } else { today - chrono::Duration::days(1) }
}

/// Three workers whose clocks read `start` now, on a database of their own, with the
/// production schedules (02:00 refresh, 03:00 sync, UTC) and the pruner every 5 s.
async fn cron_fleet(sb: &SandboxServer, start: chrono::DateTime<chrono::Utc>) -> (TestDb, Fleet, Vec<Proc>) {
    let db = TestDb::new(Backend::Postgres).await;
    let offset = (start - chrono::Utc::now()).num_seconds().to_string();
    // Three fleets of three run at once: nine pools of production's 10 connections fit the
    // server's 100 (the fleet's usual 20 would not, once a sweep's burst fills them).
    let fleet = Fleet::new(
        &db.url,
        sb,
        &[
            ("CLOCK_OFFSET_SECS", &offset),
            ("DATABASE_MAX_CONNECTIONS", "10"),
            ("CRON_REFRESH", "0 2 * * *"),
            ("CRON_SYNC", "0 3 * * *"),
            ("CRON_PRUNE", "*/5 * * * * *"),
            ("RUST_LOG", "info,worker::cron=debug"),
        ],
    );
    let workers = (0..3).map(|_| fleet.worker()).collect();
    (db, fleet, workers)
}

/// Waits until each worker has either run (to its end) or skipped the firing of `schedule` at `at`; returns
/// how many ran it by their logs, and how many `cron_runs` rows it has.
async fn firing_outcome(db: &TestDb, workers: &mut [Proc], schedule: &str, at: chrono::DateTime<chrono::Utc>) -> (usize, usize) {
    let fire_at = Timestamp::from(at).to_string();
    let mine = |l: &str| l.contains(&format!("schedule=\"{schedule}\"")) || l.contains(&format!("schedule={schedule}"));
    let mut ran = 0;
    for w in workers.iter_mut() {
        let l = w.wait_for_line(Duration::from_secs(90), |l| mine(l) && l.contains(&fire_at) && (l.contains("firing finished") || l.contains("claimed by another process")));
        ran += usize::from(l.contains("firing finished"));
    }
    let rows = db.store.cron_runs(schedule, 1000).await.unwrap().into_iter().filter(|r| r.fire_at == Timestamp::from(at) && r.finished_at.is_some()).count();
    (ran, rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_firings() {
    let _turn = take_turn();
    let sb = SandboxServer::start().await;
    let lead = chrono::Duration::seconds(15);
    let (two, three) = (latest(2), latest(3));
    // Two fleets whose clocks cross 02:00 and 03:00 in `lead`, and one started 30 s after a
    // 02:00 it slept through (every worker down).
    let (db_a, _fa, mut a) = cron_fleet(&sb, two - lead).await;
    let (db_b, _fb, mut b) = cron_fleet(&sb, three - lead).await;
    let (db_c, _fc, mut c) = cron_fleet(&sb, two + chrono::Duration::seconds(30)).await;

    let at_two = firing_outcome(&db_a, &mut a, jobs::sweeps::REFRESH_SWEEP, two).await;
    let at_three = firing_outcome(&db_b, &mut b, jobs::sweeps::SYNC_SWEEP, three).await;
    let caught_up = firing_outcome(&db_c, &mut c, jobs::sweeps::REFRESH_SWEEP, two).await;
    let catch_up_logged = c.iter().map(|w| w.output().lines().filter(|l| l.contains("firing started") && l.contains("token_refresh") && l.contains("catch_up=true") && l.contains(&Timestamp::from(two).to_string())).count()).sum::<usize>();
    // The pruner's firings, every 5 s on the same three workers: the latest three, each of which
    // every worker saw (on time, or as the catch-up of the one it started just after).
    let mut prunes: Vec<Timestamp> = db_a.store.cron_runs(jobs::retention::PRUNE, 1000).await.unwrap().into_iter().filter(|r| r.finished_at.is_some()).map(|r| r.fire_at).collect();
    prunes.sort();
    let mut pruned = vec![];
    for at in prunes.iter().rev().take(3) {
        pruned.push(firing_outcome(&db_a, &mut a, jobs::retention::PRUNE, at.to_datetime()).await);
    }
    report(
        "cron_firings",
        "5. Cron: 3 workers as the clock crosses 02:00 and 03:00; every worker down across 02:00; the pruner every 5 s",
        &format!(
            "02:00 refresh sweep run by {} of 3 workers ({} recorded); 03:00 sync sweep run by {} of 3 ({} recorded); \
             started 30 s after a missed 02:00: caught up by {} of 3 ({} recorded); \
             the pruner's latest 3 firings (every 5 s) run by {:?} of 3 workers",
            at_two.0, at_two.1, at_three.0, at_three.1, caught_up.0, caught_up.1, pruned.iter().map(|p| p.0).collect::<Vec<_>>()
        ),
    );
    assert_eq!(pruned, vec![(1, 1); 3], "each pruner firing ran once ({} firings recorded)", prunes.len());
    assert_eq!(at_two, (1, 1), "the 02:00 firing ran once");
    assert_eq!(at_three, (1, 1), "the 03:00 firing ran once");
    assert_eq!(caught_up, (1, 1), "the missed 02:00 firing was caught up once");
    assert_eq!(catch_up_logged, 1, "and it was a catch-up");
}
