//! Typed configuration. `main` builds it once (environment over TOML file over defaults) and
//! passes the parts down; nothing in the libraries reads the environment.

use std::{net::SocketAddr, time::Duration};

use crate::{secret::Secret, vault::Vault};

/// Everything a socialsync process needs, already validated.
#[derive(Clone, Debug)]
pub struct Config {
    pub database: DatabaseConfig,
    pub http: HttpConfig,
    /// Seals tokens, codes and PKCE verifiers at rest.
    pub vault: Vault,
    /// `X-Cron-Secret` for the manual triggers; none disables them.
    pub cron_secret: Option<Secret>,
    /// HS256 secret shared with the platform backend for bearer JWTs.
    pub jwt_secret: Option<Secret>,
    pub notify: NotifyConfig,
    pub instagram: Option<PlatformCredentials>,
    pub tiktok: Option<PlatformCredentials>,
    /// Apply pending migrations when a server or worker starts.
    pub migrate_on_start: bool,
}

#[derive(Clone, Debug)]
pub struct DatabaseConfig {
    /// `postgres://…` or `sqlite://…`. May hold a password: log [`DatabaseConfig::redacted_url`].
    pub url: Secret,
    pub max_connections: u32,
    /// How long to wait for a connection before giving up (start-up and every query).
    pub acquire_timeout: Duration,
}

impl DatabaseConfig {
    /// The URL with any password replaced, fit for logs and error messages.
    pub fn redacted_url(&self) -> String {
        redact_url(self.url.expose())
    }

    pub fn is_postgres(&self) -> bool {
        let url = self.url.expose();
        url.starts_with("postgres://") || url.starts_with("postgresql://")
    }
}

/// Replaces the password of `scheme://user:password@host…` with `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let Some((userinfo, host)) = rest.split_once('@') else { return url.to_owned() };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[derive(Clone, Debug)]
pub struct HttpConfig {
    pub bind: SocketAddr,
}

#[derive(Clone, Debug, Default)]
pub struct NotifyConfig {
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<Secret>,
}

/// An app's credentials on one platform (Instagram `client_id`, TikTok `client_key`).
#[derive(Clone, Debug)]
pub struct PlatformCredentials {
    pub client_id: String,
    pub client_secret: Secret,
    pub redirect_uri: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_the_log() {
        assert_eq!(redact_url("postgres://u:hunter2@db:5432/x"), "postgres://u:***@db:5432/x");
        assert_eq!(redact_url("postgres://root@127.0.0.1/x"), "postgres://root@127.0.0.1/x");
        assert_eq!(redact_url("sqlite://data/socialsync.db"), "sqlite://data/socialsync.db");
    }
}
