//! The nouns every part of socialsync shares.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// A social platform socialsync keeps connections to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase", no_pg_array)]
pub enum Platform {
    Instagram,
    Tiktok,
}

impl Platform {
    pub const ALL: [Platform; 2] = [Platform::Instagram, Platform::Tiktok];

    /// The stable name used in URLs, the database and job payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Instagram => "instagram",
            Platform::Tiktok => "tiktok",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown platform {0:?} (expected instagram or tiktok)")]
pub struct UnknownPlatform(pub String);

impl FromStr for Platform {
    type Err = UnknownPlatform;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "instagram" => Ok(Platform::Instagram),
            "tiktok" => Ok(Platform::Tiktok),
            other => Err(UnknownPlatform(other.to_owned())),
        }
    }
}

/// A connected account's row id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type)]
#[sqlx(transparent)]
#[serde(transparent)]
pub struct AccountId(pub i64);

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Whether socialsync can act for an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case", no_pg_array)]
pub enum AccountStatus {
    /// Tokens are valid (or refreshable); refreshes and syncs run.
    Active,
    /// The platform refused the tokens for good; the user must connect again.
    ReauthRequired,
    /// The user withdrew the app at the platform; tokens are gone, a new connect restores it.
    Revoked,
    /// The user disconnected the account; tokens are gone.
    Disconnected,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::ReauthRequired => "reauth_required",
            AccountStatus::Revoked => "revoked",
            AccountStatus::Disconnected => "disconnected",
        }
    }
}

impl fmt::Display for AccountStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AccountStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(AccountStatus::Active),
            "reauth_required" => Ok(AccountStatus::ReauthRequired),
            "revoked" => Ok(AccountStatus::Revoked),
            "disconnected" => Ok(AccountStatus::Disconnected),
            other => Err(format!("unknown account status {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_names_round_trip() {
        for p in Platform::ALL {
            assert_eq!(p.as_str().parse::<Platform>().unwrap(), p);
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{p}\""));
        }
        assert!("facebook".parse::<Platform>().is_err());
    }

    #[test]
    fn status_names_round_trip() {
        for s in [AccountStatus::Active, AccountStatus::ReauthRequired, AccountStatus::Revoked, AccountStatus::Disconnected] {
            assert_eq!(s.as_str().parse::<AccountStatus>().unwrap(), s);
        }
    }
}
