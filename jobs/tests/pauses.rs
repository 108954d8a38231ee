//! Pauses on PostgreSQL and on SQLite from one body: stored, replaced, expired and resumed; on
//! PostgreSQL every change is announced when it commits.

use std::time::Duration;

use jobs::{
    Timestamp,
    pauses::{Pause, Target},
    store::{PAUSES_CHANNEL, Pool},
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
