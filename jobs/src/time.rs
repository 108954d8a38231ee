//! Time as the store keeps it: milliseconds since the Unix epoch.
//!
//! Both backends store instants as a 64-bit integer so that one SQL text (and one comparison
//! semantics) serves PostgreSQL and SQLite; see ARCHITECTURE.md, "Storage".
//! Code that decides things by time takes a [`Clock`], so tests can move time instead of sleeping.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An instant, in milliseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(transparent)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        Self(Utc::now().timestamp_millis())
    }

    pub fn from_secs(secs: i64) -> Self {
        Self(secs * 1000)
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.0).unwrap_or_default()
    }

    pub fn plus(self, d: Duration) -> Self {
        Self(self.0.saturating_add(d.as_millis() as i64))
    }

    pub fn minus(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(d.as_millis() as i64))
    }

    /// The start (00:00 UTC) of `self`'s day.
    pub fn day_start(self) -> Self {
        Self(self.0 - self.0.rem_euclid(86_400_000))
    }

    /// The Monday 00:00 UTC that starts `self`'s week (1970-01-01 was a Thursday).
    pub fn week_start(self) -> Self {
        let day = self.0.div_euclid(86_400_000);
        Self((day - (day + 3).rem_euclid(7)) * 86_400_000)
    }

    /// How long from `self` until `later`; zero if `later` is not later.
    pub fn until(self, later: Timestamp) -> Duration {
        Duration::from_millis(later.0.saturating_sub(self.0).max(0) as u64)
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(t: DateTime<Utc>) -> Self {
        Self(t.timestamp_millis())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_datetime().format("%Y-%m-%dT%H:%M:%S%.3fZ"))
    }
}

/// Where "now" comes from.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The real clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// The real clock shifted by a fixed amount: a rehearsal runs the nightly sweeps (or watches a
/// clock cross 02:00) without waiting for the night. `CLOCK_OFFSET_SECS`; 0 in production.
#[derive(Clone, Copy, Debug)]
pub struct OffsetClock {
    offset_ms: i64,
}

impl OffsetClock {
    /// Shifted by `secs` seconds, into the past when negative.
    pub fn by_secs(secs: i64) -> Self {
        Self { offset_ms: secs.saturating_mul(1000) }
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Timestamp {
        Timestamp(Timestamp::now().0.saturating_add(self.offset_ms))
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn at(t: Timestamp) -> Self {
        Self(Arc::new(AtomicI64::new(t.0)))
    }

    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as i64, Ordering::SeqCst);
    }

    pub fn set(&self, t: Timestamp) {
        self.0.store(t.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_as_utc_rfc3339() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Timestamp::from_secs(86_400).plus(Duration::from_millis(5)).to_string(), "1970-01-02T00:00:00.005Z");
    }

    #[test]
    fn until_never_goes_negative() {
        assert_eq!(Timestamp(10).until(Timestamp(5)), Duration::ZERO);
        assert_eq!(Timestamp(5).until(Timestamp(10)), Duration::from_millis(5));
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::at(Timestamp(1_000));
        assert_eq!(c.now(), Timestamp(1_000));
        c.advance(Duration::from_secs(2));
        assert_eq!(c.now(), Timestamp(3_000));
    }
}
