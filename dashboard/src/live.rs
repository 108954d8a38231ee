//! Live numbers: one count query per tick, however many browsers watch.
//!
//! A single task per process computes a [`Frame`] every tick while at least one browser holds
//! the event stream, and publishes it on a `watch` channel; every stream (and every overview
//! page render within the tick) reads the same frame. With nobody watching it sleeps.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use jobs::{
    Store, Timestamp,
    store::{MinuteCounts, QueueCounts},
};
use poem::{
    handler,
    web::{
        Data,
        sse::{Event, SSE},
    },
};
use serde::Serialize;
use tokio::sync::{Mutex, Notify, watch};
use tokio_stream::{StreamExt, wrappers::WatchStream};

use crate::{Dashboard, chart};

/// What the overview shows at one instant.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Frame {
    pub at: Timestamp,
    pub queues: BTreeMap<String, QueueCounts>,
    /// Finished attempts per minute over the last hour.
    pub minutes: Vec<MinuteCounts>,
    /// The throughput chart, drawn from `minutes`.
    pub chart: String,
    pub error: Option<String>,
}

pub struct Live {
    store: Store,
    every: Duration,
    tx: watch::Sender<Arc<Frame>>,
    wake: Notify,
    started: std::sync::Once,
    /// Serialises on-demand refreshes so a burst of page loads runs one query.
    refreshing: Mutex<()>,
    /// Frames computed so far (each is one round of count queries).
    computed: AtomicU64,
}

impl Live {
    pub fn new(store: Store, every: Duration) -> Live {
        let (tx, _) = watch::channel(Arc::new(Frame::default()));
        Live { store, every, tx, wake: Notify::new(), started: std::sync::Once::new(), refreshing: Mutex::new(()), computed: AtomicU64::new(0) }
    }

    /// A frame no older than one tick: the shared one, or a fresh one computed now.
    pub async fn current(&self) -> Arc<Frame> {
        let _one = self.refreshing.lock().await;
        let latest = self.tx.borrow().clone();
        if Timestamp::now().millis() - latest.at.millis() < self.every.as_millis() as i64 {
            return latest;
        }
        let frame = Arc::new(self.compute().await);
        self.tx.send_replace(frame.clone());
        frame
    }

    pub fn frames_computed(&self) -> u64 {
        self.computed.load(Ordering::Relaxed)
    }

    async fn compute(&self) -> Frame {
        self.computed.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("socialsync_dashboard_live_frames_total").increment(1);
        compute(&self.store).await
    }

    fn subscribe(self: &Arc<Self>) -> watch::Receiver<Arc<Frame>> {
        let me = self.clone();
        self.started.call_once(|| {
            tokio::spawn(async move { me.run().await });
        });
        let rx = self.tx.subscribe();
        self.wake.notify_one();
        rx
    }

    async fn run(self: Arc<Self>) {
        loop {
            if self.tx.receiver_count() == 0 {
                self.wake.notified().await;
                continue;
            }
            let _one = self.refreshing.lock().await;
            let frame = self.compute().await;
            self.tx.send_replace(Arc::new(frame));
            drop(_one);
            tokio::time::sleep(self.every).await;
        }
    }
}

async fn compute(store: &Store) -> Frame {
    let at = Timestamp::now();
    let since = Timestamp(at.millis() - at.millis().rem_euclid(60_000)).minus(Duration::from_secs(59 * 60));
    match tokio::try_join!(store.queue_overview(), store.attempts_per_minute(since)) {
        Ok((queues, minutes)) => {
            let chart = chart::throughput(&minutes, since);
            Frame { at, queues, minutes, chart, error: None }
        }
        Err(e) => {
            tracing::warn!(target: "dashboard", error = %e, "cannot compute the live numbers");
            Frame { at, error: Some("The database did not answer; numbers are stale.".into()), ..Frame::default() }
        }
    }
}

/// `GET /dashboard/live`: the frames as Server-Sent Events.
#[handler]
pub fn events(d: Data<&Dashboard>) -> SSE {
    let rx = d.live.subscribe();
    let stream = WatchStream::new(rx).filter(|f| f.at.millis() > 0).map(|f| Event::message(serde_json::to_string(&*f).unwrap_or_default()));
    SSE::new(stream).keep_alive(Duration::from_secs(15))
}
