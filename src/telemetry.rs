//! Logging, set up once: human-readable by default, JSON with `LOG_FORMAT=json`, levels by
//! `RUST_LOG` (default `info`, with the chattiest dependencies at `warn`).

use tracing_subscriber::{EnvFilter, fmt};

pub fn init(format: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,apalis=warn,apalis_core=warn,poem=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    // A second init (tests calling main's pieces twice) is harmless; ignore its error.
    let _ = if format == "json" { builder.json().try_init() } else { builder.try_init() };
}
