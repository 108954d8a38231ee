//! This process's view of the fleet's pauses ([`jobs::pauses`]): read every poll and, on
//! PostgreSQL, again as soon as a change is announced; shared with the claim loops, the SQLite
//! handler and the cron clock.

use std::{sync::Arc, time::Duration};

use jobs::{
    Platform, Store, Timestamp,
    pauses::{self, Pause, Target},
    store::{PAUSES_CHANNEL, Pool},
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The pauses in force, as last read. Cheap to clone.
#[derive(Clone)]
pub struct Paused(watch::Receiver<Arc<Vec<Pause>>>);

impl Paused {
    /// Reads the pauses once (so a process started during a pause claims nothing), then keeps
    /// them fresh until `shutdown`.
    pub async fn start(store: Store, poll: Duration, shutdown: CancellationToken) -> Paused {
        let first = read(&store).await.unwrap_or_default();
        report(&[], &first);
        let (tx, rx) = watch::channel(Arc::new(first));
        tokio::spawn(keep_fresh(store, tx, poll, shutdown));
        Paused(rx)
    }

    /// The pause on `target` in force now, if any.
    pub fn on(&self, target: Target) -> Option<Pause> {
        let scope = target.scope();
        self.0.borrow().iter().find(|p| p.scope == scope && p.holds(Timestamp::now())).cloned()
    }

    /// The pause holding a job of `queue` about an account of `platform` now, if any.
    pub fn holding(&self, queue: &str, platform: Option<Platform>) -> Option<Pause> {
        pauses::holding(&self.0.borrow(), queue, platform, Timestamp::now()).cloned()
    }

    /// The platforms whose jobs of `queue` are paused now (beside a pause of the whole queue).
    pub fn paused_platforms(&self, queue: &str) -> Vec<Platform> {
        pauses::paused_platforms(&self.0.borrow(), queue, Timestamp::now())
    }

    /// The pauses in force, as last read (for [`jobs::pauses::Probe`]).
    pub fn all(&self) -> Arc<Vec<Pause>> {
        self.0.borrow().clone()
    }

    /// Resolves at the next change (a pause or a resume anywhere).
    pub async fn changed(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

async fn read(store: &Store) -> Result<Vec<Pause>, jobs::StoreError> {
    store.pauses(Timestamp::now()).await
}

/// Logs what changed between two reads, and sets `socialsync_paused`.
fn report(before: &[Pause], now: &[Pause]) {
    for p in now.iter().filter(|p| !before.contains(p)) {
        metrics::gauge!("socialsync_paused", "scope" => p.scope.clone()).set(1.0);
        tracing::warn!(scope = %p.scope, paused_by = %p.paused_by, reason = %p.reason, until = ?p.until, "paused: {}", p.describe());
    }
    for p in before.iter().filter(|p| !now.iter().any(|n| n.scope == p.scope)) {
        metrics::gauge!("socialsync_paused", "scope" => p.scope.clone()).set(0.0);
        tracing::warn!(scope = %p.scope, "resumed");
    }
}

async fn keep_fresh(store: Store, tx: watch::Sender<Arc<Vec<Pause>>>, poll: Duration, shutdown: CancellationToken) {
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
                tracing::debug!(error = %e, "lost the pause notifications; reading every poll meanwhile");
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
            Err(e) => tracing::debug!(error = %e, "cannot read the pauses; keeping the last read"),
        }
    }
}

async fn listen(pool: &sqlx::PgPool) -> Option<sqlx::postgres::PgListener> {
    let mut l = sqlx::postgres::PgListener::connect_with(pool).await.ok()?;
    l.listen(PAUSES_CHANNEL).await.ok()?;
    Some(l)
}
