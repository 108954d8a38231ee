//! The ops dashboard, mounted at `/dashboard`: the API lends it the `auth` rate limit for
//! sign-ins (keyed by the same client address as every other limit), and counts the 429s it
//! answers so the dashboard can chart them.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use jobs::Timestamp;
use poem::{EndpointExt, Request};

use crate::{ApiState, limits};

/// The `auth` policy, applied to dashboard sign-ins.
struct SignInThrottle(ApiState);

impl SignInThrottle {
    fn client(&self, req: &Request) -> String {
        let cfg = &self.0.config;
        limits::client_ip(req.remote_addr().as_socket_addr().map(|a| a.ip()), req.header("x-forwarded-for"), &cfg.trusted_proxies)
            .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
    }
}

impl dashboard::LoginThrottle for SignInThrottle {
    fn locked<'a>(&'a self, req: &'a Request) -> Pin<Box<dyn Future<Output = Option<Duration>> + Send + 'a>> {
        Box::pin(async move {
            let policy = self.0.config.policies.get("auth")?;
            let locked = limits::over(&self.0.store, "auth", policy, &self.client(req), Timestamp::now()).await.ok()??;
            count_429(&self.0);
            Some(Duration::from_secs(locked.retry_after_secs))
        })
    }

    fn failed<'a>(&'a self, req: &'a Request) -> Pin<Box<dyn Future<Output = Option<Duration>> + Send + 'a>> {
        Box::pin(async move {
            let policy = self.0.config.policies.get("auth")?;
            let ip = self.client(req);
            tracing::info!(target: "rate_limit", %ip, "failed dashboard sign-in counted");
            match limits::hit(&self.0.store, "auth", policy, &ip, Timestamp::now()).await {
                Ok(d) if !d.allowed => {
                    count_429(&self.0);
                    Some(Duration::from_secs(d.retry_after_secs))
                }
                _ => None,
            }
        })
    }
}

/// The dashboard's routes, or `None` when the binary configured none.
pub fn routes(state: &ApiState) -> Option<impl poem::Endpoint + use<>> {
    let config = state.config.dashboard.clone()?;
    let throttle: Arc<dyn dashboard::LoginThrottle> = Arc::new(SignInThrottle(state.clone()));
    let routes = dashboard::routes(dashboard::Dashboard::new(state.config.jobs.clone(), config, Some(throttle)));
    let trusted = state.config.trusted_proxies.clone();
    Some(routes.before(move |mut req| {
        if crate::headers::over_https(&req, &trusted) {
            req.extensions_mut().insert(dashboard::OverHttps);
        }
        async move { Ok(req) }
    }))
}

/// Counts one 429 answer in the hourly `ops_counters` (in the background: the answer does not
/// wait for it, and losing a count when the database is down is acceptable).
pub fn count_429(state: &ApiState) {
    metrics::counter!("socialsync_api_rate_limited_total").increment(1);
    let store = state.store.clone();
    tokio::spawn(async move {
        if let Err(e) = store.bump_counter(jobs::store::API_429_COUNTER, Timestamp::now()).await {
            tracing::debug!(error = %e, "cannot count a 429");
        }
    });
}
