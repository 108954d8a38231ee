//! The store's behaviour, each test run on PostgreSQL and on SQLite from one body.

use std::time::Duration;

use jobs::{
    AccountId, AccountStatus, Platform, Secret, Timestamp, Vault, VaultKey,
    store::{JobOutcome, JobRunEnd, JobRunStart, RateHit, NewAccount, NewNotification, NewOAuthState, Post, RefreshedTokens, Snapshot},
    vault::Aad,
};
use testkit::both_backends;

const T0: Timestamp = Timestamp(1_767_225_600_000); // 2026-01-01T00:00:00Z

fn vault() -> Vault {
    Vault::new(VaultKey::parse(VaultKey::generate().expose()).unwrap(), vec![])
}

fn new_account(v: &Vault, user: &str, platform: Platform, puid: &str) -> NewAccount {
    NewAccount {
        user_id: user.into(),
        platform,
        platform_user_id: puid.into(),
        username: format!("{puid}_name"),
        display_name: Some("Display".into()),
        scopes: "user.info.basic".into(),
        access_token: v.seal(&Aad::account(platform, puid, "access_token"), &Secret::from(format!("act.{puid}"))),
        refresh_token: Some(v.seal(&Aad::account(platform, puid, "refresh_token"), &Secret::from(format!("rft.{puid}")))),
        access_expires_at: T0.plus(Duration::from_secs(86_400)),
        refresh_expires_at: Some(T0.plus(Duration::from_secs(365 * 86_400))),
        next_refresh_at: Some(T0.plus(Duration::from_secs(80_000))),
    }
}

/// Runs `n` copies of `f` at once, each with its own handle to the store; returns their results.
async fn race<T, Fut>(store: &jobs::Store, n: usize, f: impl Fn(jobs::Store, usize) -> Fut) -> Vec<T>
where
    T: Send + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|i| tokio::spawn(f(store.clone(), i))).collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn note(user: &str, account: AccountId) -> NewNotification {
    NewNotification {
        user_id: user.into(),
        account_id: Some(account),
        kind: "reauth_required".into(),
        payload: serde_json::json!({ "platform": "tiktok" }),
    }
}

both_backends! {
    async fn migrations_are_recorded_and_rerun_is_a_noop(db: TestDb) {
        assert_eq!(db.store.schema_version().await.unwrap(), Some(migrations::latest_version()));
        db.migrate().await;
        assert_eq!(db.store.schema_version().await.unwrap(), Some(migrations::latest_version()));
    }

    async fn upsert_creates_then_reconnects_the_same_account(db: TestDb) {
        let v = vault();
        let first = db.store.upsert_account(&new_account(&v, "u1", Platform::Tiktok, "open-1"), T0).await.unwrap();
        assert_eq!(first.status, AccountStatus::Active);
        assert_eq!(first.platform, Platform::Tiktok);
        assert_eq!(first.token_issued_at, Some(T0));

        db.store.set_account_status(first.id, AccountStatus::ReauthRequired, T0).await.unwrap();
        let later = T0.plus(Duration::from_secs(60));
        let again = db.store.upsert_account(&new_account(&v, "u1", Platform::Tiktok, "open-1"), later).await.unwrap();
        assert_eq!(again.id, first.id, "same platform user, same row");
        assert_eq!(again.status, AccountStatus::Active);
        assert_eq!(again.status_changed_at, later);
        assert_eq!(again.created_at, T0);

        let other = db.store.upsert_account(&new_account(&v, "u1", Platform::Instagram, "open-1"), T0).await.unwrap();
        assert_ne!(other.id, first.id, "same id on another platform is another account");
        assert_eq!(db.store.accounts_of_user("u1").await.unwrap().len(), 2);
        assert!(db.store.accounts_of_user("u2").await.unwrap().is_empty());
        let stored = db.store.account(first.id).await.unwrap().unwrap();
        let token = v.open(&Aad::account(Platform::Tiktok, "open-1", "access_token"), stored.access_token.as_ref().unwrap()).unwrap();
        assert_eq!(token.expose(), "act.open-1");
        assert!(db.store.account(AccountId(999_999)).await.unwrap().is_none());
    }

    async fn refresh_and_sync_selections_page_by_id(db: TestDb) {
        let v = vault();
        let mut ids = vec![];
        for i in 0..5 {
            let mut a = new_account(&v, "u", Platform::Instagram, &format!("ig-{i}"));
            a.access_expires_at = T0.plus(Duration::from_secs(i * 86_400));
            ids.push(db.store.upsert_account(&a, T0).await.unwrap().id);
        }
        db.store.set_account_status(ids[1], AccountStatus::ReauthRequired, T0).await.unwrap();
        let horizon = T0.plus(Duration::from_secs(3 * 86_400));
        let planned = Some(T0.plus(Duration::from_secs(80_000)));
        let page1 = db.store.accounts_due_for_refresh(horizon, horizon, AccountId(0), 1).await.unwrap();
        assert_eq!(page1, vec![(ids[0], planned)]);
        let rest = db.store.accounts_due_for_refresh(horizon, horizon, page1[0].0, 10).await.unwrap();
        assert_eq!(rest, vec![(ids[2], planned)], "inactive and not-yet-due accounts are skipped");
        let planned_later = db.store.accounts_due_for_refresh(horizon, T0, AccountId(0), 10).await.unwrap();
        assert!(planned_later.is_empty(), "a refresh planned after the window is left to its plan");

        db.store.save_sync(ids[0], None, &Snapshot { taken_at: T0, ..Default::default() }, &[], T0).await.unwrap();
        let stale = db.store.accounts_stale_for_sync(T0, AccountId(0), 10).await.unwrap();
        assert_eq!(stale.iter().map(|s| s.0).collect::<Vec<_>>(), vec![ids[2], ids[3], ids[4]]);
        assert!(stale.iter().all(|s| s.1 == Platform::Instagram));
        let stale_later = db.store.accounts_stale_for_sync(T0.plus(Duration::from_secs(1)), AccountId(0), 10).await.unwrap();
        assert_eq!(stale_later.len(), 4, "synced at T0 is stale after T0");
    }

    async fn lease_is_exclusive_until_it_expires(db: TestDb) {
        let v = vault();
        let id = db.store.upsert_account(&new_account(&v, "u", Platform::Tiktok, "t"), T0).await.unwrap().id;
        let ttl = Duration::from_secs(30);
        assert!(db.store.take_lease(id, "w1", T0, ttl).await.unwrap());
        assert!(!db.store.take_lease(id, "w2", T0.plus(Duration::from_secs(29)), ttl).await.unwrap());
        assert!(db.store.take_lease(id, "w1", T0.plus(Duration::from_secs(10)), ttl).await.unwrap(), "owner extends");
        assert!(db.store.take_lease(id, "w2", T0.plus(Duration::from_secs(40)), ttl).await.unwrap(), "lapsed lease is taken over");

        // The lapsed owner cannot store tokens any more: the lease fences it.
        let tokens = RefreshedTokens {
            access_token: v.seal(&Aad::account(Platform::Tiktok, "t", "access_token"), &Secret::from("act.2")),
            refresh_token: None,
            access_expires_at: T0.plus(Duration::from_secs(2 * 86_400)),
            refresh_expires_at: None,
            next_refresh_at: None,
        };
        assert!(!db.store.record_refresh(id, "w1", &tokens, T0).await.unwrap());
        assert!(db.store.record_refresh(id, "w2", &tokens, T0.plus(Duration::from_secs(41))).await.unwrap());
        let a = db.store.account(id).await.unwrap().unwrap();
        assert_eq!(a.lease_owner, None, "a recorded refresh releases the lease");
        assert_eq!(a.last_refreshed_at, Some(T0.plus(Duration::from_secs(41))));
        assert!(a.refresh_token.is_some(), "no rotated token keeps the stored one");
        assert!(db.store.take_lease(id, "w3", T0, ttl).await.unwrap());
        db.store.release_lease(id, "w1").await.unwrap();
        assert!(!db.store.take_lease(id, "w1", T0, ttl).await.unwrap(), "only the owner releases");
        db.store.release_lease(id, "w3").await.unwrap();
        assert!(db.store.take_lease(id, "w1", T0, ttl).await.unwrap());
    }

    async fn lease_has_one_winner_among_racers(db: TestDb) {
        let v = vault();
        let id = db.store.upsert_account(&new_account(&v, "u", Platform::Tiktok, "race"), T0).await.unwrap().id;
        let won = race(&db.store, 16, |store, i| async move {
            store.take_lease(id, &format!("w{i}"), T0, Duration::from_secs(30)).await.unwrap()
        }).await;
        assert_eq!(won.iter().filter(|w| **w).count(), 1);
    }

    async fn reauth_flips_status_and_writes_one_notification(db: TestDb) {
        let v = vault();
        let id = db.store.upsert_account(&new_account(&v, "u9", Platform::Tiktok, "t"), T0).await.unwrap().id;
        let first = db.store.mark_reauth_required(id, "invalid_grant", &note("u9", id), T0).await.unwrap();
        let second = db.store.mark_reauth_required(id, "invalid_grant", &note("u9", id), T0).await.unwrap();
        assert!(first.is_some());
        assert_eq!(second, None, "running it twice notifies once");
        let a = db.store.account(id).await.unwrap().unwrap();
        assert_eq!(a.status, AccountStatus::ReauthRequired);
        assert_eq!(a.last_refresh_error.as_deref(), Some("invalid_grant"));
        let notes = db.store.notifications_of_user("u9", 10).await.unwrap();
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].kind, "reauth_required");
        assert_eq!(notes[0].payload_json()["platform"], "tiktok");
        assert_eq!(db.store.undelivered_notifications(10).await.unwrap().len(), 1);

        db.store.record_delivery(notes[0].id, Some("HTTP 502"), T0).await.unwrap();
        let n = db.store.notification(notes[0].id).await.unwrap().unwrap();
        assert_eq!((n.attempts, n.delivered_at, n.last_error.as_deref()), (1, None, Some("HTTP 502")));
        db.store.record_delivery(notes[0].id, None, T0.plus(Duration::from_secs(5))).await.unwrap();
        db.store.record_delivery(notes[0].id, None, T0.plus(Duration::from_secs(9))).await.unwrap();
        let n = db.store.notification(notes[0].id).await.unwrap().unwrap();
        assert_eq!((n.attempts, n.delivered_at), (3, Some(T0.plus(Duration::from_secs(5)))));
        assert!(db.store.undelivered_notifications(10).await.unwrap().is_empty());
    }

    async fn disconnect_forgets_tokens(db: TestDb) {
        let v = vault();
        let id = db.store.upsert_account(&new_account(&v, "u", Platform::Instagram, "ig"), T0).await.unwrap().id;
        assert!(db.store.disconnect_account(id, T0).await.unwrap());
        assert!(!db.store.disconnect_account(id, T0).await.unwrap());
        let a = db.store.account(id).await.unwrap().unwrap();
        assert_eq!(a.status, AccountStatus::Disconnected);
        assert!(a.access_token.is_none() && a.refresh_token.is_none());
    }

    async fn oauth_state_is_consumed_exactly_once(db: TestDb) {
        let v = vault();
        let state = NewOAuthState {
            state_hash: "h1".into(),
            user_id: "u".into(),
            platform: Platform::Tiktok,
            pkce_verifier: Some(v.seal(&Aad::oauth_state("h1", "pkce_verifier"), &Secret::from("verifier"))),
            expires_at: T0.plus(Duration::from_secs(600)),
        };
        db.store.create_oauth_state(&state, T0).await.unwrap();
        let code = v.seal(&Aad::oauth_state("h1", "code"), &Secret::from("code-1"));
        let now = T0.plus(Duration::from_secs(5));
        assert!(db.store.consume_oauth_state("h1", Platform::Instagram, Some(&code), now).await.unwrap().is_none(), "wrong platform");
        let used = db.store.consume_oauth_state("h1", Platform::Tiktok, Some(&code), now).await.unwrap().unwrap();
        assert_eq!(used.user_id, "u");
        assert_eq!(used.used_at, Some(now));
        assert_eq!(v.open(&Aad::oauth_state("h1", "code"), used.code.as_ref().unwrap()).unwrap().expose(), "code-1");
        assert!(db.store.consume_oauth_state("h1", Platform::Tiktok, Some(&code), now).await.unwrap().is_none(), "replayed");
        assert!(db.store.consume_oauth_state("nope", Platform::Tiktok, None, now).await.unwrap().is_none(), "unknown");

        let expiring = NewOAuthState { state_hash: "h2".into(), ..state.clone() };
        db.store.create_oauth_state(&expiring, T0).await.unwrap();
        let late = T0.plus(Duration::from_secs(600));
        assert!(db.store.consume_oauth_state("h2", Platform::Tiktok, None, late).await.unwrap().is_none(), "expired");
        assert_eq!(db.store.purge_oauth_states(late.plus(Duration::from_secs(1))).await.unwrap(), 2);
    }

    async fn oauth_state_has_one_consumer_among_racers(db: TestDb) {
        let state = NewOAuthState {
            state_hash: "race".into(),
            user_id: "u".into(),
            platform: Platform::Instagram,
            pkce_verifier: None,
            expires_at: T0.plus(Duration::from_secs(600)),
        };
        db.store.create_oauth_state(&state, T0).await.unwrap();
        let consumed = race(&db.store, 12, |store, _| async move {
            store.consume_oauth_state("race", Platform::Instagram, None, T0).await.unwrap().is_some()
        }).await;
        assert_eq!(consumed.iter().filter(|c| **c).count(), 1);
    }

    async fn sync_saves_snapshot_and_upserts_posts(db: TestDb) {
        let v = vault();
        let id = db.store.upsert_account(&new_account(&v, "u", Platform::Instagram, "ig"), T0).await.unwrap().id;
        let post = |n: i64, likes: i64| Post {
            platform_post_id: format!("p{n}"),
            caption: Some(format!("caption {n}")),
            media_type: Some("IMAGE".into()),
            published_at: Some(T0.minus(Duration::from_secs(n as u64 * 3600))),
            like_count: Some(likes),
            ..Default::default()
        };
        let snap = |at: Timestamp, followers| Snapshot { taken_at: at, followers_count: Some(followers), ..Default::default() };
        db.store.save_sync(id, None, &snap(T0, 100), &[post(1, 5), post(2, 7)], T0).await.unwrap();
        let later = T0.plus(Duration::from_secs(3600));
        db.store.save_sync(id, None, &snap(later, 120), &[post(1, 9), post(3, 1)], later).await.unwrap();

        assert_eq!(db.store.post_count(id).await.unwrap(), 3, "upsert, not duplicate");
        let posts = db.store.posts(id, 10).await.unwrap();
        assert_eq!(posts.iter().map(|p| p.platform_post_id.as_str()).collect::<Vec<_>>(), ["p1", "p2", "p3"]);
        assert_eq!(posts[0].like_count, Some(9), "the newer numbers win");
        let snaps = db.store.snapshots(id, 10).await.unwrap();
        assert_eq!(snaps.iter().map(|s| s.followers_count).collect::<Vec<_>>(), [Some(120), Some(100)]);
        let a = db.store.account(id).await.unwrap().unwrap();
        assert_eq!(a.last_synced_at, Some(later));

        db.store.record_sync_error(id, "transient", later).await.unwrap();
        let a = db.store.account(id).await.unwrap().unwrap();
        assert_eq!((a.last_synced_at, a.last_sync_error.as_deref()), (Some(later), Some("transient")));
    }

    async fn failed_sync_write_leaves_previous_data_whole(db: TestDb) {
        let v = vault();
        let id = db.store.upsert_account(&new_account(&v, "u", Platform::Instagram, "ig"), T0).await.unwrap().id;
        let good = Post { platform_post_id: "p1".into(), like_count: Some(1), ..Default::default() };
        db.store.save_sync(id, None, &Snapshot { taken_at: T0, ..Default::default() }, &[good.clone()], T0).await.unwrap();
        // A sync for an account deleted meanwhile fails on its foreign key half-way through.
        let missing = AccountId(id.0 + 1000);
        let bad = Post { platform_post_id: "p2".into(), ..Default::default() };
        assert!(db.store.save_sync(missing, None, &Snapshot { taken_at: T0, ..Default::default() }, &[bad], T0).await.is_err());
        assert_eq!(db.store.post_count(id).await.unwrap(), 1);
        assert_eq!(db.store.snapshots(id, 10).await.unwrap().len(), 1);
    }

    async fn cron_firing_is_claimed_once(db: TestDb) {
        let fire = T0.plus(Duration::from_secs(2 * 3600));
        let claims = race(&db.store, 8, |store, i| async move {
            store.claim_cron_run("token_refresh", fire, &format!("w{i}"), fire).await.unwrap()
        }).await;
        assert_eq!(claims.iter().filter(|c| **c).count(), 1);
        assert!(db.store.claim_cron_run("data_sync", fire, "w1", fire).await.unwrap(), "schedules are independent");
        db.store.finish_cron_run("token_refresh", fire, Some(42), "ok", None, fire.plus(Duration::from_secs(3))).await.unwrap();
        let last = db.store.last_cron_run("token_refresh").await.unwrap().unwrap();
        assert_eq!((last.fire_at, last.jobs_enqueued, last.outcome.as_deref()), (fire, Some(42), Some("ok")));
        assert_eq!(db.store.cron_runs("token_refresh", 5).await.unwrap().len(), 1);
        assert!(db.store.last_cron_run("other").await.unwrap().is_none());
    }

    async fn pacing_slots_are_spaced_however_many_race(db: TestDb) {
        let (spacing, max_wait) = (Duration::from_millis(200), Duration::from_secs(5));
        let mut slots = race(&db.store, 20, |store, _| async move {
            store.reserve_pacing_slot("tiktok", spacing, T0, max_wait).await.unwrap()
        })
        .await
        .into_iter()
        .map(|s| s.expect("20 slots fit in 5 s").0)
        .collect::<Vec<_>>();
        slots.sort();
        let expected: Vec<i64> = (0..20).map(|i| T0.0 + i * 200).collect();
        assert_eq!(slots, expected, "20 racers get 20 distinct slots, one spacing apart");

        // Past the allowed wait nothing is reserved; the caller learns when the gate is free.
        let free = T0.plus(spacing * 20);
        assert_eq!(db.store.reserve_pacing_slot("tiktok", spacing, T0, Duration::from_secs(3)).await.unwrap(), Err(free));
        assert_eq!(db.store.pacing_next_at("tiktok").await.unwrap(), Some(free), "a refused reservation moves nothing");
        // A gate idle since long gives the earliest instant asked for.
        let late = T0.plus(Duration::from_secs(60));
        assert_eq!(db.store.reserve_pacing_slot("tiktok", spacing, late, max_wait).await.unwrap(), Ok(late));

        // A platform's "slow down" pushes the whole gate back, never forward.
        let hint = late.plus(Duration::from_secs(30));
        db.store.push_back_pacing("tiktok", hint).await.unwrap();
        db.store.push_back_pacing("tiktok", late).await.unwrap();
        assert_eq!(db.store.reserve_pacing_slot("tiktok", spacing, late, max_wait).await.unwrap(), Err(hint));
        assert_eq!(db.store.reserve_pacing_slot("instagram", spacing, late, max_wait).await.unwrap(), Ok(late), "keys are independent");

        // Slots are whole milliseconds: a fraction of one in the spacing rounds up, never down.
        let spacing = Duration::from_micros(200_400);
        for expected in [late, late.plus(Duration::from_millis(201))] {
            assert_eq!(db.store.reserve_pacing_slot("fraction", spacing, late, max_wait).await.unwrap(), Ok(expected));
        }

        // The database's clock, which slots follow, reads the present.
        let db_now = db.store.database_micros().await.unwrap() / 1000;
        assert!(db_now.abs_diff(jobs::Timestamp::now().0) < 5_000, "{db_now}");
    }

    async fn rate_limit_counts_are_atomic(db: TestDb) {
        let (previous, window) = (T0.minus(Duration::from_secs(900)), T0);
        let expires = T0.plus(Duration::from_secs(900));
        db.store.hit_rate_limit("auth:1.2.3.4", previous, previous.minus(Duration::from_secs(900)), window).await.unwrap();
        let mut counts = race(&db.store, 25, |store, _| async move {
            store.hit_rate_limit("auth:1.2.3.4", window, previous, expires).await.unwrap()
        }).await;
        assert!(counts.iter().all(|(_, prev)| *prev == 1), "each hit reads the window before");
        counts.sort();
        assert_eq!(counts.iter().map(|c| c.0).collect::<Vec<_>>(), (1..=25).collect::<Vec<_>>(), "every hit sees its own count");
        assert_eq!(db.store.rate_limit_counts("auth:1.2.3.4", window, previous).await.unwrap(), (25, 1));
        assert_eq!(db.store.rate_limit_counts("auth:5.6.7.8", window, previous).await.unwrap(), (0, 0));
        // A hit on one key reads another key's windows in the same call, before and after.
        let hit = RateHit { key: "general:1.2.3.4".into(), window_start: window, previous_start: previous, expires_at: expires, read: "auth:1.2.3.4".into(), read_windows: (window, previous) };
        let read = db.store.hit_rate_limits_reading(&[hit]).await.unwrap();
        assert_eq!(read, vec![((1, 0), (25, 1))]);
        let hit = RateHit { key: "general:1.2.3.4".into(), window_start: window, previous_start: previous, expires_at: expires, read: "auth:5.6.7.8".into(), read_windows: (window, previous) };
        let read = db.store.hit_rate_limits_reading(&[hit]).await.unwrap();
        assert_eq!(read, vec![((2, 0), (0, 0))]);
        assert_eq!(db.store.purge_rate_limits(expires.plus(Duration::from_secs(1))).await.unwrap(), 3);
    }

    async fn rate_limit_hits_in_one_group_count_one_after_another(db: TestDb) {
        let (previous, window) = (T0.minus(Duration::from_secs(900)), T0);
        let expires = T0.plus(Duration::from_secs(900));
        db.store.hit_rate_limit("general:a", previous, previous.minus(Duration::from_secs(900)), window).await.unwrap();
        db.store.hit_rate_limit("auth:a", window, previous, expires).await.unwrap();
        let hit = |key: &str, read: &str| RateHit {
            key: key.into(),
            window_start: window,
            previous_start: previous,
            expires_at: expires,
            read: read.into(),
            read_windows: (window, previous),
        };
        // Three hits on one key and one on another, interleaved, in one call.
        let group = [hit("general:a", "auth:a"), hit("general:b", "auth:b"), hit("general:a", "auth:a"), hit("general:a", "auth:b")];
        let answers = db.store.hit_rate_limits_reading(&group).await.unwrap();
        assert_eq!(answers, vec![((1, 1), (1, 0)), ((1, 0), (0, 0)), ((2, 1), (1, 0)), ((3, 1), (0, 0))]);
        // The next group goes on from there.
        let answers = db.store.hit_rate_limits_reading(&group[..2]).await.unwrap();
        assert_eq!(answers, vec![((4, 1), (1, 0)), ((2, 0), (0, 0))]);
        assert_eq!(db.store.rate_limit_counts("general:a", window, previous).await.unwrap(), (4, 1));
    }

    async fn job_runs_record_each_attempt(db: TestDb) {
        let start = |attempt| JobRunStart { queue: "refresh", job_id: "01JOB", account_id: Some(AccountId(7)), attempt, worker: "w1" };
        let r1 = db.store.start_job_run(&start(1), T0).await.unwrap();
        db.store.finish_job_run(r1, JobOutcome::Retrying, Some("transient"), Some("HTTP 503"), T0.plus(Duration::from_secs(1))).await.unwrap();
        let r2 = db.store.start_job_run(&start(2), T0.plus(Duration::from_secs(5))).await.unwrap();
        db.store.finish_job_run(r2, JobOutcome::Succeeded, None, None, T0.plus(Duration::from_secs(6))).await.unwrap();
        let runs = db.store.job_runs("01JOB").await.unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!((runs[0].attempt, runs[0].outcome, runs[0].error_class.as_deref()), (1, Some(JobOutcome::Retrying), Some("transient")));
        assert_eq!((runs[1].attempt, runs[1].outcome), (2, Some(JobOutcome::Succeeded)));
        assert_eq!(runs[1].finished_at, Some(T0.plus(Duration::from_secs(6))));
    }

    async fn job_runs_written_in_groups_keep_each_run_apart(db: TestDb) {
        // Another writer's run in between: the group's ids must still be its own, in order.
        let lone = db.store.start_job_run(&JobRunStart { queue: "sync", job_id: "01OTHER", account_id: None, attempt: 1, worker: "w2" }, T0).await.unwrap();
        let jobs = ["01C", "01A", "01B", "01A"];
        let starts: Vec<_> = jobs
            .iter()
            .enumerate()
            .map(|(i, job)| (JobRunStart { queue: "sync", job_id: job, account_id: Some(AccountId(i as i64)), attempt: i as i32 + 1, worker: "w1" }, T0.plus(Duration::from_secs(i as u64))))
            .collect();
        let ids = db.store.start_job_runs(&starts).await.unwrap();
        assert_eq!(ids.len(), 4);
        assert!(!ids.contains(&lone));
        let outcomes = [JobOutcome::Succeeded, JobOutcome::Retrying, JobOutcome::Dead, JobOutcome::Deferred];
        let ends: Vec<_> = ids
            .iter()
            .zip(outcomes)
            .enumerate()
            .map(|(i, (id, outcome))| JobRunEnd { id: *id, outcome, error_class: Some(format!("class{i}")), error: None, at: T0.plus(Duration::from_secs(10 + i as u64)) })
            .collect();
        db.store.finish_job_runs(&ends).await.unwrap();
        for (i, job) in jobs.iter().enumerate() {
            let run = db.store.job_runs(job).await.unwrap().into_iter().find(|r| r.attempt == i as i32 + 1).expect("recorded");
            assert_eq!(run.account_id, Some(AccountId(i as i64)), "{job} attempt {}", i + 1);
            assert_eq!(run.started_at, T0.plus(Duration::from_secs(i as u64)));
            assert_eq!((run.outcome, run.error_class.as_deref()), (Some(outcomes[i]), Some(format!("class{i}").as_str())));
            assert_eq!(run.finished_at, Some(T0.plus(Duration::from_secs(10 + i as u64))));
        }
        let other = db.store.job_runs("01OTHER").await.unwrap();
        assert_eq!((other.len(), other[0].finished_at), (1, None), "a run outside the group is untouched");
    }

    async fn the_revoked_status_upgrade_keeps_every_row_and_history(db: TestDb) {
        // A database as 0010 left it (SQLite rebuilds the accounts table in 0011: nothing that
        // points at it may go, and no id may be handed out twice).
        let db = testkit::TestDb::empty(db.backend).await;
        match db.store.pool() {
            jobs::store::Pool::Postgres(p) => migrations::run_postgres_until(p, 10).await.unwrap(),
            jobs::store::Pool::Sqlite(p) => migrations::run_sqlite_until(p, 10).await.unwrap(),
        }
        assert_eq!(db.store.schema_version().await.unwrap(), Some(10));
        let v = vault();
        let kept = db.store.upsert_account(&new_account(&v, "u1", Platform::Tiktok, "kept"), T0).await.unwrap().id;
        let revoked = db.store.upsert_account(&new_account(&v, "u1", Platform::Tiktok, "gone"), T0).await.unwrap().id;
        let last = db.store.upsert_account(&new_account(&v, "u2", Platform::Instagram, "last"), T0).await.unwrap().id;
        let post = Post { platform_post_id: "p1".into(), like_count: Some(1), ..Default::default() };
        db.store.save_sync(kept, None, &Snapshot { taken_at: T0, followers_count: Some(7), ..Default::default() }, &[post], T0).await.unwrap();
        // The highest id leaves the table: AUTOINCREMENT must not hand it out again.
        on_any(&db, &format!("DELETE FROM social_accounts WHERE id = {}", last.0)).await;
        on_any(&db, &format!("UPDATE social_accounts SET status = 'reauth_required', last_refresh_error = 'revoked' WHERE id = {}", revoked.0)).await;

        db.migrate().await;
        assert_eq!(db.store.schema_version().await.unwrap(), Some(migrations::latest_version()));
        assert_eq!(db.store.account(revoked).await.unwrap().unwrap().status, AccountStatus::Revoked);
        assert_eq!(db.store.account(kept).await.unwrap().unwrap().status, AccountStatus::Active);
        assert_eq!(db.store.snapshots(kept, 10).await.unwrap().len(), 1, "snapshots kept");
        assert_eq!(db.store.post_count(kept).await.unwrap(), 1, "posts kept");
        let next = db.store.upsert_account(&new_account(&v, "u3", Platform::Instagram, "next"), T0).await.unwrap().id;
        assert!(next.0 > last.0, "id {} handed out again", next.0);
        assert!(db.store.set_account_status(kept, AccountStatus::Revoked, T0).await.unwrap(), "the new status is allowed");
    }
}

/// Runs one statement on either backend.
async fn on_any(db: &testkit::TestDb, sql: &str) {
    match db.store.pool() {
        jobs::store::Pool::Postgres(p) => {
            sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(p).await.unwrap();
        }
        jobs::store::Pool::Sqlite(p) => {
            sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(p).await.unwrap();
        }
    }
}
