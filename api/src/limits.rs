//! Rate limits shared by every API process through the database.
//!
//! **Algorithm: a sliding window, estimated from two fixed windows** (the one now running and
//! the one before it, weighted by how much of it still overlaps the last window-length of
//! time). A plain fixed window lets a client send twice the limit across a window boundary; a
//! true sliding log stores every request. The estimate needs two counters per key, one atomic
//! upsert and one read per check, and never lets more than the limit through in any window-
//! length of time by more than the rounding of the previous window's share. (On PostgreSQL a
//! hit and the read of the window before are one round trip.)
//!
//! Denied requests count too: a client that keeps hammering stays limited until it slows down.

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use jobs::{Store, Timestamp, group::Grouped, store::RateHit};
use poem::http::StatusCode;
use serde_json::json;

use crate::error::ApiError;

/// One policy: at most `limit` requests per `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub limit: u32,
    pub window: Duration,
}

/// Policies by name. The API uses `general` (per IP), `platform_events` (per IP, instead of
/// `general` on the platforms' callbacks), `auth` (failed authentications per IP),
/// `sync` and `connect` (per user); any other name (by default `chat`, `upload`) is offered to
/// sibling services through `POST /api/v1/limits/{policy}/consume`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policies(pub BTreeMap<String, Policy>);

impl Default for Policies {
    fn default() -> Self {
        let p = |limit, secs| Policy { limit, window: Duration::from_secs(secs) };
        Policies(BTreeMap::from([
            ("general".into(), p(100, 15 * 60)),
            // The platforms send every user's events from a few addresses.
            ("platform_events".into(), p(3000, 60)),
            ("auth".into(), p(5, 15 * 60)),
            ("sync".into(), p(10, 15 * 60)),
            ("connect".into(), p(50, 24 * 3600)),
            ("chat".into(), p(100, 5 * 60)),
            ("upload".into(), p(20, 3600)),
        ]))
    }
}

impl Policies {
    /// The defaults with `spec` applied: `name=LIMIT/WINDOW` pairs, comma-separated, the window
    /// in s, m, h or d (`general=1000/15m,upload=50/1h`). A new name adds a policy.
    pub fn with_overrides(spec: &str) -> Result<Policies, String> {
        let mut policies = Policies::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let bad = || format!("expected name=LIMIT/WINDOW such as general=100/15m, got {item:?}");
            let (name, rule) = item.split_once('=').ok_or_else(bad)?;
            let (limit, window) = rule.split_once('/').ok_or_else(bad)?;
            let limit: u32 = limit.trim().parse().map_err(|_| bad())?;
            let window = parse_window(window.trim()).ok_or_else(bad)?;
            let name = name.trim();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') || limit == 0 {
                return Err(bad());
            }
            policies.0.insert(name.to_owned(), Policy { limit, window });
        }
        Ok(policies)
    }

    pub fn get(&self, name: &str) -> Option<Policy> {
        self.0.get(name).copied()
    }
}

fn parse_window(s: &str) -> Option<Duration> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = n.parse().ok().filter(|n| *n > 0)?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// The outcome of one check, with what the `RateLimit-*` headers say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the current window ends.
    pub reset_secs: u64,
    /// When denied: seconds until a request would be allowed again.
    pub retry_after_secs: u64,
}

/// The sliding-window decision at `now` for a key with `previous` hits in the window before
/// and `current` in this one (this request included).
pub fn decide(policy: Policy, now: Timestamp, previous: i64, current: i64) -> Decision {
    let w = policy.window.as_millis().max(1) as i64;
    let start = now.0 - now.0.rem_euclid(w);
    let elapsed = (now.0 - start) as f64 / w as f64;
    let (limit, prev, curr) = (policy.limit as f64, previous as f64, current as f64);
    let estimate = prev * (1.0 - elapsed) + curr;
    let allowed = estimate <= limit;
    let to_end = start + w - now.0;
    let retry_ms = if allowed {
        0
    } else if curr + 1.0 <= limit {
        // The previous window's share must shrink to leave room for one more, within this window.
        let needed = 1.0 - (limit - curr - 1.0) / prev.max(1.0);
        ((needed - elapsed).max(0.0) * w as f64) as i64
    } else {
        // Only after this window ends, once its own share has shrunk enough.
        to_end + ((1.0 - (limit - 1.0).max(0.0) / curr) * w as f64) as i64
    };
    Decision {
        allowed,
        limit: policy.limit,
        remaining: (limit - estimate).floor().max(0.0) as u32,
        reset_secs: ceil_secs(to_end),
        retry_after_secs: if allowed { 0 } else { ceil_secs(retry_ms).max(1) },
    }
}

fn ceil_secs(ms: i64) -> u64 {
    (ms.max(0) as u64).div_ceil(1000)
}

impl Decision {
    /// The `RateLimit-*` headers (IETF draft, as express-rate-limit sends them).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ratelimit-limit", self.limit.to_string()),
            ("ratelimit-remaining", self.remaining.to_string()),
            ("ratelimit-reset", self.reset_secs.to_string()),
        ]
    }

    /// The 429 for a denied request.
    pub fn error(&self) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMIT_EXCEEDED",
            format!("too many requests; try again in {} s", self.retry_after_secs),
        );
        e.extra = Some(("retry_after_seconds", json!(self.retry_after_secs)));
        e.headers = self.headers();
        e.headers.push(("retry-after", self.retry_after_secs.to_string()));
        e
    }
}

/// The fixed windows a check at `now` reads: the current one's start, the previous one's, and
/// when the current one's counter may be purged (once it can no longer be the previous one).
fn windows(policy: Policy, now: Timestamp) -> (Timestamp, Timestamp, Timestamp) {
    let w = policy.window.as_millis().max(1) as i64;
    let start = now.0 - now.0.rem_euclid(w);
    (Timestamp(start), Timestamp(start - w), Timestamp(start + 2 * w))
}

/// Counts one hit of `subject` under `policy` and decides.
pub async fn hit(store: &Store, name: &str, policy: Policy, subject: &str, now: Timestamp) -> Result<Decision, ApiError> {
    let (current_start, previous_start, expires) = windows(policy, now);
    let (current, previous) = store.hit_rate_limit(&format!("{name}:{subject}"), current_start, previous_start, expires).await?;
    Ok(decide(policy, now, previous, current))
}

/// Whether `subject` is already over `policy`, without counting a hit.
pub async fn over(store: &Store, name: &str, policy: Policy, subject: &str, now: Timestamp) -> Result<Option<Decision>, ApiError> {
    let (current_start, previous_start, _) = windows(policy, now);
    let (current, previous) = store.rate_limit_counts(&format!("{name}:{subject}"), current_start, previous_start).await?;
    // As if this request were one more hit: at the limit already means denied.
    let d = decide(policy, now, previous, current + 1);
    Ok((!d.allowed).then_some(d))
}

/// [`hit`] under `policy` and [`over`] under `lockout` for the same subject, in one round trip
/// shared with the other requests checked at the same moment ([`GuardHits`]).
pub async fn hit_and_check(
    hits: &GuardHits,
    store: &Store,
    (name, policy): (&str, Policy),
    (lockout_name, lockout): (&str, Policy),
    subject: &str,
    now: Timestamp,
) -> Result<(Decision, Option<Decision>), ApiError> {
    let (window_start, previous_start, expires_at) = windows(policy, now);
    let (lockout_start, lockout_previous, _) = windows(lockout, now);
    let hit = RateHit {
        key: format!("{name}:{subject}"),
        window_start,
        previous_start,
        expires_at,
        read: format!("{lockout_name}:{subject}"),
        read_windows: (lockout_start, lockout_previous),
    };
    let ((current, previous), (locked_current, locked_previous)) = hits.get(store).call(hit).await.map_err(|e| {
        tracing::warn!(target: "rate_limit", error = %e, "cannot count the request");
        ApiError::unavailable()
    })?;
    let locked = decide(lockout, now, locked_previous, locked_current + 1);
    Ok((decide(policy, now, previous, current), (!locked.allowed).then_some(locked)))
}

/// The guard's hits of one API process, written in groups ([`jobs::group`]): under load,
/// every request waiting for its count shares the next statement, instead of each updating
/// the same counter row in turn. Counts stay exact: each request gets the count after its own
/// hit. Started on first use, on the runtime serving the requests.
#[derive(Default)]
pub struct GuardHits(std::sync::OnceLock<Grouped<RateHit, HitAnswer>>);

type HitAnswer = ((i64, i64), (i64, i64));

impl GuardHits {
    fn get(&self, store: &Store) -> &Grouped<RateHit, HitAnswer> {
        self.0.get_or_init(|| {
            let store = store.clone();
            Grouped::new(256, move |hits: Vec<RateHit>| {
                let store = store.clone();
                async move { store.hit_rate_limits_reading(&hits).await.map_err(|e| e.to_string()) }
            })
        })
    }
}

/// The client's address: the socket's peer, unless that peer is a trusted proxy; then the
/// right-most `X-Forwarded-For` entry that is not itself a trusted proxy.
pub fn client_ip(peer: Option<IpAddr>, forwarded_for: Option<&str>, trusted: &[ipnet::IpNet]) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let chain = forwarded_for.unwrap_or("");
    for hop in chain.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if is_trusted(&ip) => continue,
            Ok(ip) => return Some(ip),
            // A malformed entry: nothing left of it can be trusted.
            Err(_) => return Some(peer),
        }
    }
    Some(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN15: Duration = Duration::from_secs(900);

    fn at(window_start_ms: i64, into_ms: i64) -> Timestamp {
        Timestamp(window_start_ms + into_ms)
    }

    #[test]
    fn the_limit_is_allowed_and_one_more_is_not() {
        let p = Policy { limit: 5, window: MIN15 };
        let t = at(900_000 * 1000, 0);
        assert!(decide(p, t, 0, 5).allowed);
        let d = decide(p, t, 0, 6);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.reset_secs, 900);
        assert_eq!(d.retry_after_secs, 900 + 300, "the window's end, then until its 6 hits and one more weigh 5");
    }

    #[test]
    fn the_previous_window_weighs_by_its_overlap() {
        let p = Policy { limit: 10, window: MIN15 };
        // Half-way through: 10 earlier hits count as 5.
        let t = at(900_000 * 1000, 450_000);
        let d = decide(p, t, 10, 5);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        let d = decide(p, t, 10, 6);
        assert!(!d.allowed);
        // One more fits when 10 × (1 − f) + 6 + 1 ≤ 10, at f = 0.7: 180 s after the half-way mark.
        assert_eq!(d.retry_after_secs, 180);
        assert_eq!(decide(p, at(900_000 * 1000, 899_000), 10, 1).remaining, 8);
    }

    #[test]
    fn overrides_replace_and_add_policies_and_reject_nonsense() {
        let p = Policies::with_overrides("general=1000/1m, custom=3/2d").unwrap();
        assert_eq!(p.get("general"), Some(Policy { limit: 1000, window: Duration::from_secs(60) }));
        assert_eq!(p.get("custom"), Some(Policy { limit: 3, window: Duration::from_secs(172_800) }));
        assert_eq!(p.get("auth"), Policies::default().get("auth"));
        for bad in ["general", "general=10", "general=x/1m", "general=10/1w", "general=0/1m", "=1/1m", "a b=1/1m", "g=1/0s"] {
            assert!(Policies::with_overrides(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client_ip(Some(ip("1.2.3.4")), Some("9.9.9.9"), &trusted), Some(ip("1.2.3.4")), "spoofed header ignored");
        assert_eq!(client_ip(Some(ip("10.0.0.5")), Some("9.9.9.9, 10.0.0.7"), &trusted), Some(ip("9.9.9.9")));
        assert_eq!(client_ip(Some(ip("10.0.0.5")), Some("6.6.6.6, 9.9.9.9"), &trusted), Some(ip("9.9.9.9")), "left of the first untrusted hop is the client's to forge");
        assert_eq!(client_ip(Some(ip("10.0.0.5")), None, &trusted), Some(ip("10.0.0.5")));
        assert_eq!(client_ip(Some(ip("10.0.0.5")), Some("junk"), &trusted), Some(ip("10.0.0.5")));
    }
}
