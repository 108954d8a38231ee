//! Pauses: in an incident ops stop a queue's claims (or those of one platform's syncs or
//! refreshes) or a schedule's firings fleet-wide, for a while or until they resume them. A pause is a row in `pauses` ([`crate::store::pauses`]):
//! every worker reads them each poll, and on PostgreSQL hears each change at once (a
//! notification). A paused queue's jobs stay as they are, uncounted, and run in their order on
//! resume; attempts already running finish. A paused schedule's firings are recorded as
//! skipped.

use std::{sync::Arc, time::Duration};

use crate::{QUEUES, domain::Platform, refresh, retention, sweeps, sync, time::Timestamp};

/// Every schedule, by its name in `cron_runs`.
pub const SCHEDULES: [&str; 3] = [sweeps::REFRESH_SWEEP, sweeps::SYNC_SWEEP, retention::PRUNE];

/// The queues whose jobs are each about one account, so one platform's may be paused alone.
pub const PLATFORM_QUEUES: [&str; 2] = [sync::KIND, refresh::KIND];

/// What a pause stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// A queue's claims (one of [`QUEUES`]).
    Queue(&'static str),
    /// A queue's claims of one platform's jobs (one of [`PLATFORM_QUEUES`]).
    Platform(&'static str, Platform),
    /// A schedule's firings (one of [`SCHEDULES`]).
    Schedule(&'static str),
}

impl Target {
    /// As [`Target::key`] writes it: a queue or a schedule by name (`sync`, `data_sync`), or one
    /// platform's jobs on a queue (`sync:tiktok`).
    pub fn parse(key: &str) -> Result<Target, String> {
        if let Some((queue, platform)) = key.split_once(':') {
            return Target::parse(queue)?.on_platform(platform);
        }
        if let Some(q) = QUEUES.iter().find(|q| **q == key) {
            return Ok(Target::Queue(q));
        }
        if let Some(s) = SCHEDULES.iter().find(|s| **s == key) {
            return Ok(Target::Schedule(s));
        }
        Err(format!("nothing to pause is named {key:?}: a queue ({}) or a schedule ({})", QUEUES.join(", "), SCHEDULES.join(", ")))
    }

    /// This queue's jobs of `platform` only.
    pub fn on_platform(self, platform: &str) -> Result<Target, String> {
        let p = Platform::ALL.into_iter().find(|p| p.as_str() == platform).ok_or_else(|| {
            format!("no platform is named {platform:?}: {}", Platform::ALL.map(Platform::as_str).join(", "))
        })?;
        match self {
            Target::Queue(q) if PLATFORM_QUEUES.contains(&q) => Ok(Target::Platform(q, p)),
            _ => Err(format!("only the {} queues pause per platform, not {self}", PLATFORM_QUEUES.join(" and "))),
        }
    }

    /// What [`Target::parse`] reads back: `sync`, `sync:tiktok`, `data_sync`.
    pub fn key(self) -> String {
        match self {
            Target::Queue(n) | Target::Schedule(n) => n.to_owned(),
            Target::Platform(q, p) => format!("{q}:{p}"),
        }
    }

    /// As stored in `pauses.scope`: `queue:sync`, `queue:sync:tiktok`, `schedule:data_sync`.
    pub fn scope(self) -> String {
        match self {
            Target::Queue(_) | Target::Platform(..) => format!("queue:{}", self.key()),
            Target::Schedule(s) => format!("schedule:{s}"),
        }
    }

    pub fn from_scope(scope: &str) -> Option<Target> {
        match scope.split_once(':')? {
            ("queue", q) => Target::parse(q).ok().filter(|t| !matches!(t, Target::Schedule(_))),
            ("schedule", s) => SCHEDULES.iter().find(|k| **k == s).map(|k| Target::Schedule(k)),
            _ => None,
        }
    }

    /// The `socialsync resume` arguments that end a pause on it.
    pub fn command_args(self) -> String {
        match self {
            Target::Platform(q, p) => format!("{q} --platform {p}"),
            _ => self.key(),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Queue(q) => write!(f, "the {q} queue"),
            Target::Platform(q, p) => write!(f, "the {q} queue's {p} jobs"),
            Target::Schedule(s) => write!(f, "the {s} schedule"),
        }
    }
}

/// The pause among `pauses` that holds a job of `queue` about an account of `platform` (none
/// for a job about no account) at `now`: the queue's own, or its platform's.
pub fn holding<'a>(pauses: &'a [Pause], queue: &str, platform: Option<Platform>, now: Timestamp) -> Option<&'a Pause> {
    let held = |t: Target| match t {
        Target::Queue(q) => q == queue,
        Target::Platform(q, p) => q == queue && platform == Some(p),
        Target::Schedule(_) => false,
    };
    pauses.iter().find(|p| p.holds(now) && p.target().is_some_and(held))
}

/// The platforms whose jobs of `queue` are paused at `now` (not counting a pause of the queue).
pub fn paused_platforms(pauses: &[Pause], queue: &str, now: Timestamp) -> Vec<Platform> {
    let on = |p: &Pause| match p.target() {
        Some(Target::Platform(q, platform)) if q == queue && p.holds(now) => Some(platform),
        _ => None,
    };
    pauses.iter().filter_map(on).collect()
}

/// The pauses as the process last heard them, for a handler that has waited (a sync for its
/// pacing slot) to ask before it calls a platform. The worker runtime sets it; elsewhere
/// nothing is paused.
#[derive(Clone, Default)]
pub struct Probe(Option<Arc<dyn Fn() -> Arc<Vec<Pause>> + Send + Sync>>);

impl Probe {
    pub fn new(pauses: impl Fn() -> Arc<Vec<Pause>> + Send + Sync + 'static) -> Probe {
        Probe(Some(Arc::new(pauses)))
    }

    /// The pause holding a job of `queue` about an account of `platform` now, if any
    /// ([`holding`]).
    pub fn holding(&self, queue: &str, platform: Option<Platform>) -> Option<Pause> {
        let pauses = self.0.as_ref()?();
        holding(&pauses, queue, platform, Timestamp::now()).cloned()
    }
}

/// What is paused of `queue` at `now`, in a word or two for a table: `paused` (the queue),
/// `tiktok paused` (one platform's jobs), or nothing.
pub fn queue_state(pauses: &[Pause], queue: &str, now: Timestamp) -> Option<String> {
    if holding(pauses, queue, None, now).is_some() {
        return Some("paused".into());
    }
    let platforms = paused_platforms(pauses, queue, now);
    (!platforms.is_empty()).then(|| format!("{} paused", platforms.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")))
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
    fn a_job_is_held_by_its_queue_s_pause_or_its_platform_s() {
        let now = Timestamp(1_000_000);
        let pause = |t: Target| Pause::new(t, "ana", "outage", now, None);
        let pauses = [pause(Target::Platform("sync", Platform::Tiktok)), pause(Target::Queue("notify"))];
        assert!(holding(&pauses, "sync", Some(Platform::Tiktok), now).is_some());
        assert!(holding(&pauses, "sync", Some(Platform::Instagram), now).is_none());
        assert!(holding(&pauses, "sync", None, now).is_none() && holding(&pauses, "refresh", Some(Platform::Tiktok), now).is_none());
        assert!(holding(&pauses, "notify", None, now).is_some());
        assert_eq!(paused_platforms(&pauses, "sync", now), [Platform::Tiktok]);
        assert_eq!(queue_state(&pauses, "sync", now).as_deref(), Some("tiktok paused"));
        assert_eq!(queue_state(&pauses, "notify", now).as_deref(), Some("paused"));
        assert_eq!(queue_state(&pauses, "refresh", now), None);
    }

    #[test]
    fn targets_are_queues_and_schedules_by_name() {
        assert_eq!(Target::parse("sync"), Ok(Target::Queue("sync")));
        assert_eq!(Target::parse("data_sync"), Ok(Target::Schedule("data_sync")));
        assert!(Target::parse("syncs").unwrap_err().contains("a queue (connect, refresh, sync, notify, event"));
        for t in [Target::Queue("notify"), Target::Schedule("prune")] {
            assert_eq!(Target::from_scope(&t.scope()), Some(t));
        }
        assert_eq!(Target::from_scope("platform:tiktok"), None);
        let tiktok = Target::parse("sync:tiktok").unwrap();
        assert_eq!((tiktok, tiktok.scope(), tiktok.command_args()), (Target::Platform("sync", Platform::Tiktok), "queue:sync:tiktok".into(), "sync --platform tiktok".into()));
        assert_eq!(Target::from_scope("queue:sync:tiktok"), Some(tiktok));
        assert_eq!(Target::from_scope("queue:data_sync"), None);
        assert!(Target::parse("notify:tiktok").unwrap_err().contains("only the sync and refresh queues pause per platform"));
        assert!(Target::parse("sync:youtube").unwrap_err().contains("no platform is named \"youtube\""));
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
