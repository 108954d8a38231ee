//! This process's view of the fleet's pauses ([`jobs::pauses`]) and of the queues' live
//! concurrency (`queue_concurrency`): read every poll and, on PostgreSQL, again as soon as a
//! change is announced; shared with the claim loops, the SQLite handler and the cron clock.

use std::{sync::Arc, time::Duration};

use jobs::{
    Platform, Store, Timestamp,
    pauses::{self, Pause, Target},
    store::{LiveConcurrency, PAUSES_CHANNEL, Pool},
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The pauses in force and the live concurrencies, as last read. Cheap to clone.
#[derive(Clone)]
pub struct Paused(watch::Receiver<Arc<Controls>>);

/// What ops control, as one read found it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Controls {
    pauses: Arc<Vec<Pause>>,
    concurrency: Vec<LiveConcurrency>,
}

impl Paused {
    /// Reads the pauses once (so a process started during a pause claims nothing), then keeps
    /// them fresh until `shutdown`.
    pub async fn start(store: Store, poll: Duration, shutdown: CancellationToken) -> Paused {
        let first = read(&store).await.unwrap_or_default();
        report(&Controls::default(), &first);
        let (tx, rx) = watch::channel(Arc::new(first));
        tokio::spawn(keep_fresh(store, tx, poll, shutdown));
        Paused(rx)
    }

    /// The pause on `target` in force now, if any.
    pub fn on(&self, target: Target) -> Option<Pause> {
        let scope = target.scope();
        self.0.borrow().pauses.iter().find(|p| p.scope == scope && p.holds(Timestamp::now())).cloned()
    }

    /// The pause holding a job of `queue` about an account of `platform` now, if any.
    pub fn holding(&self, queue: &str, platform: Option<Platform>) -> Option<Pause> {
        pauses::holding(&self.0.borrow().pauses, queue, platform, Timestamp::now()).cloned()
    }

    /// The platforms whose jobs of `queue` are paused now (beside a pause of the whole queue).
    pub fn paused_platforms(&self, queue: &str) -> Vec<Platform> {
        pauses::paused_platforms(&self.0.borrow().pauses, queue, Timestamp::now())
    }

    /// The pauses in force, as last read (for [`jobs::pauses::Probe`]).
    pub fn all(&self) -> Arc<Vec<Pause>> {
        self.0.borrow().pauses.clone()
    }

    /// `queue`'s concurrency set live by ops, if any (in place of the configured one).
    pub fn concurrency(&self, queue: &str) -> Option<usize> {
        self.0.borrow().concurrency.iter().find(|c| c.queue == queue).map(|c| c.concurrency.max(1) as usize)
    }

    /// Resolves at the next change (a pause or a resume anywhere).
    pub async fn changed(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

async fn read(store: &Store) -> Result<Controls, jobs::StoreError> {
    let (pauses, concurrency) = tokio::try_join!(store.pauses(Timestamp::now()), store.live_concurrency())?;
    Ok(Controls { pauses: Arc::new(pauses), concurrency })
}

/// Logs what changed between two reads, and sets `socialsync_paused`.
fn report(before: &Controls, now: &Controls) {
    for c in now.concurrency.iter().filter(|c| !before.concurrency.contains(c)) {
        tracing::warn!(queue = %c.queue, concurrency = c.concurrency, set_by = %c.set_by, "concurrency set live: {} attempts at once per worker process", c.concurrency);
    }
    for c in before.concurrency.iter().filter(|c| !now.concurrency.iter().any(|n| n.queue == c.queue)) {
        tracing::warn!(queue = %c.queue, "concurrency reset to the configured one");
    }
    let (before, now) = (&before.pauses, &now.pauses);
    for p in now.iter().filter(|p| !before.contains(p)) {
        metrics::gauge!("socialsync_paused", "scope" => p.scope.clone()).set(1.0);
        tracing::warn!(scope = %p.scope, paused_by = %p.paused_by, reason = %p.reason, until = ?p.until, "paused: {}", p.describe());
    }
    for p in before.iter().filter(|p| !now.iter().any(|n| n.scope == p.scope)) {
        metrics::gauge!("socialsync_paused", "scope" => p.scope.clone()).set(0.0);
        tracing::warn!(scope = %p.scope, "resumed");
    }
}

async fn keep_fresh(store: Store, tx: watch::Sender<Arc<Controls>>, poll: Duration, shutdown: CancellationToken) {
    let mut listener = None;
    loop {
        if let (Pool::Postgres(pool), None) = (store.pool(), &listener) {
            listener = listen(pool).await;
        }
        let heard = async {
            match listener.as_mut() {
                Some(l) => l.recv().await.map(drop),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(poll) => {}
            heard = heard => if let Err(e) = heard {
                tracing::debug!(error = %e, "lost the pause and concurrency notifications; reading every poll meanwhile");
                listener = None;
            },
        }
        match read(&store).await {
            Ok(now) => {
                if **tx.borrow() != now {
                    report(&tx.borrow(), &now);
                    tx.send_replace(Arc::new(now));
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the pauses and concurrencies; keeping the last read"),
        }
    }
}

async fn listen(pool: &sqlx::PgPool) -> Option<sqlx::postgres::PgListener> {
    let mut l = sqlx::postgres::PgListener::connect_with(pool).await.ok()?;
    l.listen(PAUSES_CHANNEL).await.ok()?;
    Some(l)
}
