//! Pauses: in an incident ops stop a queue's claims or a schedule's firings fleet-wide, for a
//! while or until they resume them. A pause is a row in `pauses` ([`crate::store::pauses`]):
//! every worker reads them each poll, and on PostgreSQL hears each change at once (a
//! notification). A paused queue's jobs stay as they are, uncounted, and run in their order on
//! resume; attempts already running finish. A paused schedule's firings are recorded as
//! skipped.

use std::{sync::Arc, time::Duration};

use crate::{QUEUES, retention, sweeps, time::Timestamp};

/// Every schedule, by its name in `cron_runs`.
pub const SCHEDULES: [&str; 3] = [sweeps::REFRESH_SWEEP, sweeps::SYNC_SWEEP, retention::PRUNE];

/// What a pause stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// A queue's claims (one of [`QUEUES`]).
    Queue(&'static str),
    /// A schedule's firings (one of [`SCHEDULES`]).
    Schedule(&'static str),
}

impl Target {
    /// A queue's or a schedule's name: `sync`, `data_sync`.
    pub fn parse(name: &str) -> Result<Target, String> {
        if let Some(q) = QUEUES.iter().find(|q| **q == name) {
            return Ok(Target::Queue(q));
        }
        if let Some(s) = SCHEDULES.iter().find(|s| **s == name) {
            return Ok(Target::Schedule(s));
        }
        Err(format!("nothing to pause is named {name:?}: a queue ({}) or a schedule ({})", QUEUES.join(", "), SCHEDULES.join(", ")))
    }

    /// As stored in `pauses.scope`: `queue:sync`, `schedule:data_sync`.
    pub fn scope(self) -> String {
        match self {
            Target::Queue(q) => format!("queue:{q}"),
            Target::Schedule(s) => format!("schedule:{s}"),
        }
    }

    pub fn from_scope(scope: &str) -> Option<Target> {
        match scope.split_once(':')? {
            ("queue", q) => QUEUES.iter().find(|k| **k == q).map(|k| Target::Queue(k)),
            ("schedule", s) => SCHEDULES.iter().find(|k| **k == s).map(|k| Target::Schedule(k)),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Target::Queue(n) | Target::Schedule(n) => n,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Queue(q) => write!(f, "the {q} queue"),
            Target::Schedule(s) => write!(f, "the {s} schedule"),
        }
    }
}

/// The pauses as the process last heard them, for a handler that has waited (a sync for its
/// pacing slot) to ask before it calls a platform. The worker runtime sets it; elsewhere
/// nothing is paused.
#[derive(Clone, Default)]
pub struct Probe(Option<Arc<dyn Fn(Target) -> Option<Pause> + Send + Sync>>);

impl Probe {
    pub fn new(on: impl Fn(Target) -> Option<Pause> + Send + Sync + 'static) -> Probe {
        Probe(Some(Arc::new(on)))
    }

    /// The pause on `target` in force now, if any.
    pub fn on(&self, target: Target) -> Option<Pause> {
        self.0.as_ref().and_then(|f| f(target))
    }
}

/// A pause, as stored.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Pause {
    pub scope: String,
    pub paused_by: String,
    pub reason: String,
    pub paused_at: Timestamp,
    /// When it ends by itself; `None`: when resumed.
    pub until: Option<Timestamp>,
}

impl Pause {
    pub fn new(target: Target, by: &str, reason: &str, now: Timestamp, lasting: Option<Duration>) -> Pause {
        Pause { scope: target.scope(), paused_by: by.to_owned(), reason: reason.to_owned(), paused_at: now, until: lasting.map(|d| now.plus(d)) }
    }

    pub fn target(&self) -> Option<Target> {
        Target::from_scope(&self.scope)
    }

    /// Whether it still pauses at `now`.
    pub fn holds(&self, now: Timestamp) -> bool {
        self.until.is_none_or(|u| u > now)
    }

    /// "by ana at 2026-12-07 14:02 UTC until 14:32 UTC: platform outage" — for logs, the
    /// dashboard's banner and `socialsync status`.
    pub fn describe(&self) -> String {
        let at = |t: Timestamp| t.to_datetime().format("%Y-%m-%d %H:%M UTC").to_string();
        let until = self.until.map(|u| format!(" until {}", at(u))).unwrap_or_default();
        format!("by {} at {}{until}: {}", self.paused_by, at(self.paused_at), self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_queues_and_schedules_by_name() {
        assert_eq!(Target::parse("sync"), Ok(Target::Queue("sync")));
        assert_eq!(Target::parse("data_sync"), Ok(Target::Schedule("data_sync")));
        assert!(Target::parse("syncs").unwrap_err().contains("a queue (connect, refresh, sync, notify, event"));
        for t in [Target::Queue("notify"), Target::Schedule("prune")] {
            assert_eq!(Target::from_scope(&t.scope()), Some(t));
        }
        assert_eq!(Target::from_scope("platform:tiktok"), None);
    }

    #[test]
    fn a_pause_with_an_end_holds_until_it() {
        let now = Timestamp(1_000_000);
        let p = Pause::new(Target::Queue("sync"), "ana", "outage", now, Some(Duration::from_secs(60)));
        assert!(p.holds(now) && p.holds(now.plus(Duration::from_secs(59))) && !p.holds(now.plus(Duration::from_secs(60))));
        assert!(Pause::new(Target::Queue("sync"), "ana", "outage", now, None).holds(Timestamp(i64::MAX)));
        assert_eq!(p.describe(), "by ana at 1970-01-01 00:16 UTC until 1970-01-01 00:17 UTC: outage");
    }
}
