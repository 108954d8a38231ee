//! Named operators and the audit trail, over real HTTP on both backends: an `OPS_USERS`
//! operator signs in by name (a wrong password is refused and recorded), every action they post
//! is recorded with what it was on and how it ended, and the Audit page lists and filters it.

use dashboard::{Access, operators};
use jobs::{
    Secret, Timestamp,
    store::{AuditEntry, AuditFilter},
};
use testkit::{TestDb, both_backends};

mod common;
use common::{dead_syncs, serve};

async fn trail(db: &TestDb) -> Vec<AuditEntry> {
    let mut all = db.store.audit_entries(&AuditFilter::default(), None, 100).await.unwrap();
    all.reverse();
    all
}

both_backends! {
    async fn an_operator_s_sign_in_and_actions_are_in_the_audit_trail(db: TestDb) {
        let ana = operators::line("ana", &Secret::from("ana's long password")).unwrap();
        let access = Access::SignIn { operators: operators::parse(&ana).unwrap(), shared: Some(Secret::from("the shared one")) };
        let mut ops = serve(&db, access, false).await;
        let (_, login) = ops.get("/login").await;
        assert!(login.contains(r#"name="name""#), "a name field: {login}");

        assert_eq!(ops.sign_in("ana", "the shared one").await, 401, "the shared password is not ana's");
        assert_eq!(ops.sign_in("cy", "ana's long password").await, 401, "nor is there a cy");
        assert_eq!(ops.sign_in("ana", "ana's long password").await, 303);
        let ids = dead_syncs(&db.store, 1).await;
        let token = ops.csrf("/").await;
        let (_, location, _) = ops.post("/jobs/act", &[("csrf", &token), ("action", "retry"), ("id", &ids[0]), ("back", "/dashboard/jobs")]).await;
        assert!(location.contains("notice=Retried%201%20job"), "{location}");
        ops.post("/jobs/act", &[("csrf", "forged"), ("action", "delete"), ("id", &ids[0])]).await;
        ops.post("/pauses", &[("csrf", &token), ("action", "pause"), ("target", "sync:tiktok"), ("minutes", "30"), ("reason", "TikTok 500s")]).await;
        let pauses = db.store.pauses(Timestamp::now()).await.unwrap();
        assert_eq!(pauses[0].paused_by, "ana (dashboard)", "the pause names its operator");

        let got: Vec<(String, String, String, String)> = trail(&db).await.into_iter().map(|e| (e.actor, e.action, e.target, e.outcome)).collect();
        let want = [
            ("ana", "sign_in.failed", "the dashboard", "refused: wrong name or password"),
            ("cy", "sign_in.failed", "the dashboard", "refused: wrong name or password"),
            ("ana", "sign_in", "the dashboard", "ok"),
            ("ana", "jobs.retry", &*format!("id={}", ids[0]), "ok: Retried 1 job."),
            ("ana", "jobs.delete", &*format!("id={}", ids[0]), "error: This form expired (security token mismatch); reload the page and try again."),
            ("ana", "pause", "target=sync:tiktok minutes=30 reason=TikTok 500s", "ok: Paused the sync queue's tiktok jobs: workers stop starting its work within about a second."),
        ];
        let want: Vec<(String, String, String, String)> = want.iter().map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string())).collect();
        assert_eq!(got, want);

        // The shared password signs in as `ops`; the page filters by operator and by action.
        let mut shared = serve(&db, Access::SignIn { operators: operators::parse(&ana).unwrap(), shared: Some(Secret::from("the shared one")) }, false).await;
        assert_eq!(shared.sign_in("", "the shared one").await, 303);
        let (status, page) = shared.get("/audit?actor=ana&action=jobs").await;
        assert_eq!(status, 200);
        assert!(page.contains("jobs.retry") && page.contains("jobs.delete") && !page.contains("<code>sign_in") && !page.contains("<code>pause<"), "{page}");
        let (_, page) = shared.get("/audit?action=sign_in").await;
        assert_eq!(page.matches("<code>sign_in").count(), 4, "three of ana's and cy's, and ops' own: {page}");
        assert!(page.contains("<td>ops</td>"), "{page}");
        assert!(!page.contains("long password") && !page.contains("argon2"), "no password nor hash on the page");
    }
}
