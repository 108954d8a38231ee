//! Fleet-wide pacing of sync starts (DESIGN.md §6), the process side of `store::pacing`.
//!
//! A sync reserves its platform's next slot in the database a little ahead of time
//! ([`PACING_LEAD`]), then sleeps until the slot and starts. Reserving ahead means the
//! database round trip — and an fsync or a busy pool stalling it — happens before the slot,
//! not between the slot and the request, so what the platform sees is spaced by the gate, not
//! by how fast each commit came back.
//!
//! Slots are instants on the database's clock, the one clock every worker shares: each process
//! learns its offset to it ([`FleetClock`]) and sleeps by its own clock plus that offset, so a
//! machine whose clock is off by 50 ms still starts on time.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{
    domain::Platform,
    store::{Store, StoreError},
    time::Timestamp,
};

/// How far ahead of now a slot is reserved: longer than a database round trip normally takes.
pub const PACING_LEAD: Duration = Duration::from_millis(100);

/// How long before its slot a sync wakes, to yield its way to the exact instant.
const EARLY_WAKE_US: i64 = 2_000;

/// How often a process re-measures its offset to the database's clock.
const CLOCK_CHECK_EVERY: Duration = Duration::from_secs(60);

/// A clock reading whose round trip took at most this long is good enough (its error is at
/// most half of it); up to [`OFFSET_SAMPLES`] readings are taken to find one.
const GOOD_ROUND_TRIP_US: i64 = 1_000;
const OFFSET_SAMPLES: usize = 10;
/// A best round trip longer than this is worth a warning: half of it is a fair share of the
/// smallest pacing margin.
const SLOW_ROUND_TRIP_US: i64 = 5_000;

/// The extra spacing against the timing jitter after the slot, unless configured
/// (`PACING_MARGIN_MS`): 1 % of the default 2 s spacing, whatever the spacing, since the jitter
/// does not scale with it. A quarter of it is how late a start may wake ([`late_allowed`]); the
/// rest covers the request's way to the platform and the error in this process's reading of
/// the database's clock. Measured on the 2-core machine: under load (two busy loops beside
/// three workers) wake-ups up to 4 ms late, then up to 6 ms until the platform logged the
/// request; while the host took CPU time from the machine (`st` in vmstat up to 29 %), a start
/// reached the platform 15 ms later than its slot allowed against the next one's, crossing the
/// 12 ms the margin then was at 50 ms spacing (measured 2026-11-28 at 9b81445; BENCHMARKS.md,
/// "Findings", has the jitter under smaller margins).
pub const DEFAULT_MARGIN: Duration = Duration::from_millis(20);

/// How late after its slot a start may wake and still take it; a later one gives the slot up
/// and takes the next.
fn late_allowed(margin: Duration) -> Duration {
    margin / 4
}

/// What a process keeps for pacing: one reserving task per platform at a time (so a slot does
/// not wake every waiting sync), and its offset to the database's clock.
#[derive(Clone, Default)]
pub struct LocalGates {
    instagram: Arc<tokio::sync::Mutex<()>>,
    tiktok: Arc<tokio::sync::Mutex<()>>,
    clock: FleetClock,
}

/// When the slot is, or, when the gate is further away than the allowed wait, when to come back.
pub enum Slot {
    /// Started: the sync may make its first call now. Holds how long it waited.
    Now(Duration),
    /// The gate opens further away than the allowed wait, in this long: come back then.
    Later(Duration),
}

impl LocalGates {
    fn turn(&self, p: Platform) -> &tokio::sync::Mutex<()> {
        match p {
            Platform::Instagram => &self.instagram,
            Platform::Tiktok => &self.tiktok,
        }
    }

    /// Waits for a slot on `platform`'s gate, spaced `spacing` plus `margin` from every other
    /// start in the fleet.
    pub async fn start(&self, store: &Store, platform: Platform, spacing: Duration, margin: Duration, max_wait: Duration) -> Result<Slot, StoreError> {
        let begun = Instant::now();
        loop {
            let turn = self.turn(platform).lock().await;
            // The offset is read here, and measured again here when due: never in the wait for
            // the slot, where its round trips would make the start late.
            let offset = self.clock.offset(store).await?;
            let now_micros = || local_micros() + offset;
            let now = Timestamp(now_micros().div_euclid(1000));
            let slot = match store.reserve_pacing_slot(platform.as_str(), spacing + margin, now.plus(PACING_LEAD), max_wait).await? {
                Ok(slot) => slot,
                Err(next) => return Ok(Slot::Later(now.until(next))),
            };
            drop(turn);
            let slot_us = slot.0 * 1000;
            // The timer wakes on a millisecond tick, after the deadline: sleep to just before
            // the slot, then yield until it.
            let wait = slot_us - now_micros() - EARLY_WAKE_US;
            tokio::time::sleep(Duration::from_micros(wait.max(0) as u64)).await;
            let mut now = now_micros();
            while now < slot_us {
                tokio::task::yield_now().await;
                now = now_micros();
            }
            let late = Duration::from_micros((now - slot_us) as u64);
            if late <= late_allowed(margin) {
                tracing::debug!(target: "data_sync", %platform, slot_ms = slot.0, late_us = late.as_micros() as u64, "pacing slot taken");
                return Ok(Slot::Now(begun.elapsed()));
            }
            // Woke too late: starting now would crowd the next slot. This one goes unused.
            metrics::counter!("socialsync_pacing_slots_missed_total", "platform" => platform.as_str()).increment(1);
            tracing::debug!(target: "data_sync", %platform, late_ms = late.as_millis() as u64, "pacing slot missed; taking the next");
        }
    }
}

/// This process's reading of the database's clock: its own clock plus an offset measured
/// every [`CLOCK_CHECK_EVERY`] (Cristian's method: the reading with the shortest round trip).
#[derive(Clone, Default)]
struct FleetClock {
    /// When the offset was measured, and the offset in microseconds.
    offset: Arc<Mutex<Option<(Instant, i64)>>>,
}

impl FleetClock {
    /// The database's clock minus this process's, in microseconds.
    async fn offset(&self, store: &Store) -> Result<i64, StoreError> {
        let cached = *self.offset.lock().expect("not poisoned");
        let offset = match cached {
            Some((at, offset)) if at.elapsed() < CLOCK_CHECK_EVERY => offset,
            _ => {
                let offset = measure_offset(store).await?;
                *self.offset.lock().expect("not poisoned") = Some((Instant::now(), offset));
                offset
            }
        };
        Ok(offset)
    }
}

fn local_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

async fn measure_offset(store: &Store) -> Result<i64, StoreError> {
    // The offset is off by at most half the round trip it was read in: read until one comes
    // back fast, so a busy moment (a process starting, a full pool) does not shift every start
    // of this process for a minute.
    let mut best: Option<(i64, i64)> = None;
    for _ in 0..OFFSET_SAMPLES {
        let sent = local_micros();
        let db = store.database_micros().await?;
        let back = local_micros();
        let (rtt, offset) = (back - sent, db - (sent + back) / 2);
        if best.is_none_or(|(r, _)| rtt < r) {
            best = Some((rtt, offset));
        }
        if rtt <= GOOD_ROUND_TRIP_US {
            break;
        }
    }
    let (rtt, offset) = best.unwrap_or((0, 0));
    tracing::debug!(target: "data_sync", offset_us = offset, round_trip_us = rtt, "database clock offset measured");
    if rtt > SLOW_ROUND_TRIP_US {
        tracing::warn!(target: "data_sync", round_trip_us = rtt, "database clock read slowly; pacing starts may be off by up to half of it");
    }
    Ok(offset)
}
