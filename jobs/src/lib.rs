//! socialsync's core library: everything that decides *what* happens, with no HTTP server and
//! no queue runtime, so it can be tested by calling functions.
//!
//! - [`domain`]: the shared nouns (platforms, account ids, statuses).
//! - [`config`]: typed, validated configuration, built once by the binary.
//! - [`secret`]: the `[redacted]` wrapper for every secret value.
//! - [`vault`]: AES-SIV sealing of tokens and codes, with key ids for rotation.
//! - [`store`]: all SQL for the domain tables, on PostgreSQL or SQLite.
//! - [`time`]: instants as stored, and the injectable clock.
//! - [`clients`]: the Instagram and TikTok clients behind one trait, with classified errors.
//! - [`job`]: what every handler shares (context, outcome, error, backoff); one module per job:
//!   [`connect`], [`refresh`], [`sync`], [`notify`], [`events`] (what the platforms tell the
//!   app: verified, then applied), and the nightly [`sweeps`] on their
//!   [`schedule`].
//! - [`pacing`]: the process side of the fleet-wide gate that spaces sync starts.
//! - [`retention`]: how long history is kept, and the pruner pass that deletes what is older.
//! - [`pauses`]: what ops have stopped fleet-wide (a queue's claims, a schedule's firings).

pub mod clients;
pub mod config;
pub mod connect;
pub mod domain;
pub mod events;
pub mod group;
pub mod job;
pub mod notify;
pub mod pacing;
pub mod pauses;
pub mod refresh;
pub mod retention;
pub mod schedule;
pub mod secret;
pub mod store;
pub mod sweeps;
pub mod sync;
pub mod time;
pub mod vault;

/// Every queue, by its name (each job module's `KIND`).
pub const QUEUES: [&str; 5] = [connect::KIND, refresh::KIND, sync::KIND, notify::KIND, events::KIND];

pub use domain::{AccountId, AccountStatus, Platform};
pub use secret::Secret;
pub use store::{Store, StoreError};
pub use time::{Clock, ManualClock, OffsetClock, SystemClock, Timestamp};
pub use vault::{Aad, Sealed, Vault, VaultKey};
