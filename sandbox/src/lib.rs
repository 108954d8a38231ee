//! The sandbox platform: Instagram (Instagram API with Instagram Login) and TikTok (Login Kit
//! v2, Display API) as their real wire formats, for development and tests. See
//! `shared/platform-spec.md` and the README's developer section.
//!
//! Each real host is a path prefix, so a client swaps only base URLs:
//! `instagram/www`, `instagram/api`, `instagram/graph`, `tiktok/www`, `tiktok/open`.
//! `_admin/…` is the control surface (clock, settings, accounts and switches, faults, counters,
//! request log), plain HTTP so tests in other processes can drive it; open, or behind a token
//! ([`AdminAccess`]).
//!
//! Everything lives in memory behind one mutex: the sandbox serves tests and demos, not load.

mod admin;
mod consent;
mod demo;
mod events;
mod instagram;
mod state;
mod tiktok;
mod traffic;

use std::{
    future::Future,
    sync::{Arc, Mutex, MutexGuard},
};

use poem::{EndpointExt, Route, Server, get, listener::TcpAcceptor, post};

pub use state::{EventDelivery, Fault, Net, Rotation, Settings, Switches};

/// Fixed app credentials the sandbox accepts (a real app registers its own).
pub const INSTAGRAM_CLIENT_ID: &str = "sandbox-instagram-app";
pub const INSTAGRAM_CLIENT_SECRET: &str = "sandbox-instagram-secret";
pub const TIKTOK_CLIENT_KEY: &str = "sandbox-tiktok-app";
pub const TIKTOK_CLIENT_SECRET: &str = "sandbox-tiktok-secret";

/// A sandbox platform; clones share one world.
#[derive(Clone)]
pub struct Sandbox {
    world: Arc<Mutex<state::State>>,
    admin: AdminAccess,
}

/// Who may use the control surface, `/_admin`: it changes the simulated world and lists every
/// secret issued, so a sandbox mounted by a process others reach must not serve it to anyone.
#[derive(Clone, Debug, Default)]
pub enum AdminAccess {
    /// Anyone: the standalone sandbox and `socialsync up`, development on one machine.
    #[default]
    Open,
    /// Requests with `Authorization: Bearer <token>`; with no token, no request (401).
    Token(Option<Arc<str>>),
}

impl AdminAccess {
    fn admits(&self, req: &poem::Request) -> bool {
        use sha2::Digest;
        match self {
            AdminAccess::Open => true,
            AdminAccess::Token(None) => false,
            AdminAccess::Token(Some(token)) => {
                let given = req.header("authorization").and_then(|h| h.strip_prefix("Bearer ")).unwrap_or_default();
                // Compared as digests: the time taken tells nothing about the token.
                sha2::Sha256::digest(given.as_bytes()) == sha2::Sha256::digest(token.as_bytes())
            }
        }
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new(Settings::default())
    }
}

impl Sandbox {
    pub fn new(settings: Settings) -> Sandbox {
        Sandbox { world: Arc::new(Mutex::new(state::State::new(settings))), admin: AdminAccess::Open }
    }

    /// This sandbox with its control surface behind `admin`.
    pub fn with_admin(self, admin: AdminAccess) -> Sandbox {
        Sandbox { admin, ..self }
    }

    fn lock(&self) -> MutexGuard<'_, state::State> {
        // A handler that panicked mid-update leaves plain data behind; keep serving.
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the settings, as `PATCH /_admin/settings` does (e.g. where to send events).
    pub fn configure(&self, change: impl FnOnce(&mut Settings)) {
        change(&mut self.lock().settings);
    }

    /// The sandbox clock, ms since the epoch (moved by `POST /_admin/clock`).
    pub fn now_ms(&self) -> i64 {
        self.lock().now_ms()
    }

    /// All routes, relative to wherever they are mounted.
    pub fn routes(&self) -> impl poem::Endpoint + use<> {
        Route::new()
            .at("/instagram/www/oauth/authorize", get(consent::instagram_page).post(consent::instagram_decide))
            .at("/instagram/api/oauth/access_token", post(instagram::exchange_code))
            .at("/instagram/graph/access_token", get(instagram::exchange_long_lived))
            .at("/instagram/graph/refresh_access_token", get(instagram::refresh))
            .at("/instagram/graph/me", get(instagram::me))
            .at("/instagram/graph/me/media", get(instagram::media))
            .at("/tiktok/www/v2/auth/authorize/", get(consent::tiktok_page).post(consent::tiktok_decide))
            .at("/tiktok/open/v2/oauth/token/", post(tiktok::token))
            .at("/tiktok/open/v2/oauth/revoke/", post(tiktok::revoke))
            .at("/tiktok/open/v2/user/info/", get(tiktok::user_info))
            .at("/tiktok/open/v2/video/list/", post(tiktok::video_list))
            .nest("/_admin", admin::routes())
            .around(traffic::observe)
            .data(self.clone())
    }
}

/// Serves the sandbox alone (`socialsync sandbox --port N`) until `shutdown` resolves.
pub async fn serve(
    sandbox: Sandbox,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    Server::new_with_acceptor(TcpAcceptor::from_tokio(listener)?)
        .run_with_graceful_shutdown(sandbox.routes(), shutdown, Some(std::time::Duration::from_secs(1)))
        .await
}
