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

/// Where and how the platform clients connect.
#[derive(Clone, Debug)]
pub struct PlatformsConfig {
    pub instagram: InstagramConfig,
    pub tiktok: TiktokConfig,
    pub connect_timeout: Duration,
    /// The whole request, first byte to last; a hung platform fails the call after this.
    pub request_timeout: Duration,
}

#[derive(Clone, Debug)]
pub struct InstagramConfig {
    pub credentials: PlatformCredentials,
    /// `https://www.instagram.com` (the consent page).
    pub www_url: String,
    /// `https://api.instagram.com` (the code exchange).
    pub api_url: String,
    /// `https://graph.instagram.com` (everything else).
    pub graph_url: String,
    pub scopes: String,
}

#[derive(Clone, Debug)]
pub struct TiktokConfig {
    /// `client_id` holds TikTok's `client_key`.
    pub credentials: PlatformCredentials,
    /// `https://www.tiktok.com` (the consent page).
    pub www_url: String,
    /// `https://open.tiktokapis.com` (tokens and the Display API).
    pub open_url: String,
    pub scopes: String,
}

impl InstagramConfig {
    pub const DEFAULT_SCOPES: &str = "instagram_business_basic";

    pub fn production(credentials: PlatformCredentials) -> Self {
        Self {
            credentials,
            www_url: "https://www.instagram.com".into(),
            api_url: "https://api.instagram.com".into(),
            graph_url: "https://graph.instagram.com".into(),
            scopes: Self::DEFAULT_SCOPES.into(),
        }
    }

    /// The sandbox at `base` (e.g. `http://127.0.0.1:8080/sandbox`).
    pub fn sandbox(base: &str, credentials: PlatformCredentials) -> Self {
        let base = base.trim_end_matches('/');
        Self {
            credentials,
            www_url: format!("{base}/instagram/www"),
            api_url: format!("{base}/instagram/api"),
            graph_url: format!("{base}/instagram/graph"),
            scopes: Self::DEFAULT_SCOPES.into(),
        }
    }
}

impl TiktokConfig {
    pub const DEFAULT_SCOPES: &str = "user.info.basic,user.info.profile,user.info.stats,video.list";

    pub fn production(credentials: PlatformCredentials) -> Self {
        Self {
            credentials,
            www_url: "https://www.tiktok.com".into(),
            open_url: "https://open.tiktokapis.com".into(),
            scopes: Self::DEFAULT_SCOPES.into(),
        }
    }

    pub fn sandbox(base: &str, credentials: PlatformCredentials) -> Self {
        let base = base.trim_end_matches('/');
        Self {
            credentials,
            www_url: format!("{base}/tiktok/www"),
            open_url: format!("{base}/tiktok/open"),
            scopes: Self::DEFAULT_SCOPES.into(),
        }
    }
}
