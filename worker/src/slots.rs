//! A queue's slots — attempts at once in this process — resizable while attempts run, so ops
//! can change a queue's concurrency live (`queue_concurrency`, [`crate::pauses::Paused`]).
//! Growing adds permits at once; shrinking takes free permits at once and the rest as running
//! attempts end (their permits are forgotten instead of given back), so no attempt is cut off.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering::Relaxed},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct LiveSlots {
    sem: Arc<Semaphore>,
    /// The size asked for, and permits still to take back from attempts as they end.
    size: Mutex<(usize, usize)>,
    /// Attempts holding a slot now.
    busy: AtomicUsize,
}

/// A slot held by an attempt; given back, or forgotten if the queue shrank meanwhile.
pub struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    slots: Arc<LiveSlots>,
}

impl LiveSlots {
    pub fn new(n: usize) -> Arc<LiveSlots> {
        Arc::new(LiveSlots { sem: Arc::new(Semaphore::new(n)), size: Mutex::new((n, 0)), busy: AtomicUsize::new(0) })
    }

    /// The size asked for.
    pub fn size(&self) -> usize {
        self.size.lock().expect("never poisoned").0
    }

    /// Slots free now.
    pub fn available(&self) -> usize {
        self.sem.available_permits()
    }

    /// Attempts holding a slot now.
    pub fn busy(&self) -> usize {
        self.busy.load(Relaxed)
    }

    pub fn resize(&self, n: usize) {
        let n = n.max(1);
        let mut size = self.size.lock().expect("never poisoned");
        let (old, owed) = *size;
        if n > old {
            let grow = n - old;
            let repaid = owed.min(grow);
            self.sem.add_permits(grow - repaid);
            *size = (n, owed - repaid);
        } else if n < old {
            let shrink = old - n;
            let taken = self.sem.forget_permits(shrink);
            *size = (n, owed + shrink - taken);
        }
    }

    /// Waits for a free slot.
    pub async fn acquire(self: &Arc<Self>) -> Slot {
        let permit = self.sem.clone().acquire_owned().await.expect("never closed");
        self.busy.fetch_add(1, Relaxed);
        Slot { permit: Some(permit), slots: self.clone() }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.busy.fetch_sub(1, Relaxed);
        let Some(permit) = self.permit.take() else { return };
        let mut size = self.slots.size.lock().expect("never poisoned");
        if size.1 > 0 {
            size.1 -= 1;
            permit.forget();
        }
    }
}

/// Keeps `slots` at `queue`'s live concurrency, else `configured`, at most `max`; for the
/// process's life.
pub async fn follow(slots: Arc<LiveSlots>, mut paused: crate::pauses::Paused, queue: &'static str, configured: usize, max: usize) {
    loop {
        slots.resize(paused.concurrency(queue).unwrap_or(configured).min(max));
        paused.changed().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shrinking_waits_for_running_attempts_and_growing_is_at_once() {
        let slots = LiveSlots::new(3);
        let (a, b) = (slots.acquire().await, slots.acquire().await);
        slots.resize(1);
        assert_eq!((slots.size(), slots.available(), slots.busy()), (1, 0, 2), "the free one taken at once");
        drop(a);
        assert_eq!(slots.available(), 0, "the first to end is taken back");
        drop(b);
        assert_eq!(slots.available(), 1, "then one is free: the new size");
        slots.resize(4);
        assert_eq!(slots.available(), 4);
        let held: Vec<Slot> = futures::future::join_all((0..4).map(|_| slots.acquire())).await;
        slots.resize(2);
        slots.resize(3);
        drop(held);
        assert_eq!((slots.size(), slots.available()), (3, 3), "a shrink undone before the attempts ended owes nothing");
    }
}
