//! What every job handler shares: its context, its outcome, its error, and the retry policy.

use std::{sync::Arc, time::Duration};

use crate::{
    clients::{Clients, PlatformError},
    domain::Platform,
    pacing,
    secret::Secret,
    store::{Enqueued, NewJob, Store, StoreError},
    time::{Clock, Timestamp},
    vault::Vault,
};

/// Tunables of the handlers, from configuration.
#[derive(Clone, Debug)]
pub struct JobSettings {
    /// Minimum gap between two sync starts on one platform, fleet-wide.
    pub instagram_spacing: Duration,
    pub tiktok_spacing: Duration,
    /// Extra gap added to every pacing slot, against timing jitter.
    pub pacing_margin: Duration,
    /// A sync whose slot is further away than this reschedules itself instead of waiting.
    pub max_pacing_wait: Duration,
    /// Refresh this long before the access token expires (capped at half its lifetime).
    pub instagram_refresh_lead: Duration,
    pub tiktok_refresh_lead: Duration,
    /// How long a refresh holds an account's lease (longer than any platform call).
    pub lease_ttl: Duration,
    /// A sync refreshes first when the access token expires sooner than this.
    pub sync_token_margin: Duration,
    /// Posts read per sync, at most.
    pub sync_post_cap: usize,
    pub notify_webhook_url: Option<String>,
    pub notify_webhook_secret: Option<Secret>,
    /// How long history is kept (the pruner's firings).
    pub retention: crate::retention::Retention,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            instagram_spacing: Duration::from_secs(2),
            tiktok_spacing: Duration::from_secs(2),
            pacing_margin: pacing::DEFAULT_MARGIN,
            max_pacing_wait: Duration::from_secs(5),
            instagram_refresh_lead: Duration::from_secs(7 * 86_400),
            tiktok_refresh_lead: Duration::from_secs(30 * 60),
            lease_ttl: Duration::from_secs(60),
            sync_token_margin: Duration::from_secs(5 * 60),
            sync_post_cap: 1000,
            notify_webhook_url: None,
            notify_webhook_secret: None,
            retention: crate::retention::Retention::default(),
        }
    }
}

impl JobSettings {
    pub fn spacing(&self, p: Platform) -> Duration {
        match p {
            Platform::Instagram => self.instagram_spacing,
            Platform::Tiktok => self.tiktok_spacing,
        }
    }

    pub fn refresh_lead(&self, p: Platform) -> Duration {
        match p {
            Platform::Instagram => self.instagram_refresh_lead,
            Platform::Tiktok => self.tiktok_refresh_lead,
        }
    }
}

/// Everything a handler may use. Cheap to clone.
#[derive(Clone)]
pub struct JobContext {
    pub store: Store,
    pub vault: Vault,
    pub clients: Clients,
    pub clock: Arc<dyn Clock>,
    pub settings: JobSettings,
    /// This process's unique worker name (lease owner, job_runs.worker).
    pub worker: String,
    /// For webhook deliveries.
    pub http: reqwest::Client,
    /// This process's side of the fleet-wide pacing gates.
    pub local_gates: crate::pacing::LocalGates,
    /// What ops have paused, as this process last heard.
    pub paused: crate::pauses::Probe,
}

impl JobContext {
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// `t` on this context's clock, as the queue's database clock reads it. The queue runs
    /// jobs by the database's clock; handlers plan by the injected one (moved in tests). In
    /// production both are the system clock and this is `t` itself.
    pub fn real(&self, t: Timestamp) -> Timestamp {
        Timestamp::now().plus(self.now().until(t))
    }

    /// Enqueues `job`, its run time read on this context's clock.
    pub async fn enqueue(&self, mut job: NewJob) -> Result<Enqueued, StoreError> {
        job.run_at = self.real(job.run_at);
        self.store.enqueue(&job).await
    }
}

/// What a handler did, for the log and `job_runs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done(String),
    /// Nothing to do (already done, account gone or inactive): the job still succeeded.
    Skipped(String),
}

/// Why a handler did not finish. The runtime turns this into a durable retry, a dead job, or
/// a deferral; it never hot-loops.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Try again later (after `after`, or the runtime's backoff).
    #[error("{class}: {message}")]
    Retry { class: &'static str, message: String, after: Option<Duration> },
    /// Never retry.
    #[error("{class}: {message}")]
    GiveUp { class: &'static str, message: String },
    /// Not now: run at `until`, with `payload` as the job's new arguments; no attempt counted.
    #[error("deferred until {until}")]
    Defer { until: Timestamp, payload: serde_json::Value },
}

impl JobError {
    pub fn class(&self) -> &'static str {
        match self {
            JobError::Retry { class, .. } | JobError::GiveUp { class, .. } => class,
            JobError::Defer { .. } => "deferred",
        }
    }
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        JobError::Retry { class: "database", message: e.to_string(), after: None }
    }
}

impl From<PlatformError> for JobError {
    fn from(e: PlatformError) -> Self {
        match e {
            PlatformError::Permanent { .. } => JobError::GiveUp { class: "permanent", message: e.to_string() },
            PlatformError::Transient(_) => JobError::Retry { class: "transient", message: e.to_string(), after: None },
            // Handlers that can wait without spending an attempt defer instead (see `refresh`).
            PlatformError::TooEarly(_) => JobError::Retry { class: "too_early", message: e.to_string(), after: Some(Duration::from_secs(3600)) },
            PlatformError::RateLimited { retry_after, .. } => {
                JobError::Retry { class: "rate_limited", message: e.to_string(), after: retry_after }
            }
        }
    }
}

/// The wait before attempt `attempt + 1`: exponential from `base`, capped, with "equal
/// jitter" (half fixed, half random) so retries of many jobs spread out but still grow.
pub fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exp = base.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(20))).min(cap);
    let half = exp / 2;
    let r = u64::from_le_bytes(crate::vault::random_bytes::<8>());
    let jitter = if half.is_zero() { Duration::ZERO } else { Duration::from_nanos(r % half.as_nanos().max(1) as u64) };
    half + jitter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_within_bounds() {
        let base = Duration::from_secs(2);
        let cap = Duration::from_secs(600);
        for attempt in 1..=12u32 {
            let full = (base * 2u32.pow(attempt - 1)).min(cap);
            for _ in 0..50 {
                let b = backoff(attempt, base, cap);
                assert!(b >= full / 2 && b <= full, "attempt {attempt}: {b:?} not in [{:?}, {full:?}]", full / 2);
            }
        }
        assert!(backoff(40, base, cap) <= cap, "no overflow");
    }

    #[test]
    fn platform_errors_map_to_job_errors() {
        let p: JobError = PlatformError::Permanent { code: "invalid_grant".into(), message: String::new() }.into();
        assert!(matches!(p, JobError::GiveUp { class: "permanent", .. }));
        let r: JobError = PlatformError::RateLimited { retry_after: Some(Duration::from_secs(9)), message: String::new() }.into();
        assert!(matches!(r, JobError::Retry { class: "rate_limited", after: Some(_), .. }));
        let t: JobError = PlatformError::Transient("x".into()).into();
        assert!(matches!(t, JobError::Retry { class: "transient", after: None, .. }));
    }
}
