//! The `socialsync` binary: parses the command line, loads the configuration once, and hands
//! typed parts to the crates that do the work. See ARCHITECTURE.md.

mod commands;
mod ops;
mod settings;
mod telemetry;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "socialsync", version, about = "Keeps Instagram and TikTok connections alive and their data fresh.")]
struct Cli {
    /// A TOML file of settings (environment variables override it).
    #[arg(long, global = true, env = "SOCIALSYNC_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// API, dashboard, workers and cron in one process; SQLite by default (the default command).
    Up(commands::StartArgs),
    /// The HTTP API alone (run any number against one PostgreSQL).
    Api(commands::StartArgs),
    /// The job workers alone (run any number against one PostgreSQL).
    Worker(commands::StartArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// The sandbox platform alone (simulated Instagram and TikTok).
    Sandbox {
        /// Port to listen on (0 picks a free one).
        #[arg(long, default_value_t = 9000)]
        port: u16,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
    },
    /// Generate or rotate secrets.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Stop a queue's claims or a schedule's firings fleet-wide (running attempts finish).
    Pause(ops::PauseArgs),
    /// Start paused work again.
    Resume(ops::ResumeArgs),
    /// Set a queue's attempts at once per worker process, live (or --reset to the configured one).
    Concurrency(ops::ConcurrencyArgs),
    /// Queues, pauses and worker processes, from the database.
    Status,
    /// The dashboard's operators.
    #[command(subcommand)]
    Ops(OpsCommand),
}

#[derive(Subcommand)]
enum OpsCommand {
    /// Read a password from standard input and print NAME's line for OPS_USERS (a password hash).
    AddUser {
        /// Letters, digits, '.', '_' or '-'.
        name: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print fresh secrets as lines for an env file.
    Generate,
    /// Re-encrypt every stored secret under ENCRYPTION_KEY (old keys in ENCRYPTION_KEYS_PREVIOUS).
    Rotate {
        /// Rows per batch.
        #[arg(long, default_value_t = 500)]
        batch: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Keys(KeysCommand::Generate)) = cli.command {
        commands::keys_generate();
        return ExitCode::SUCCESS;
    }
    if let Some(Command::Ops(OpsCommand::AddUser { name })) = &cli.command {
        return match ops::add_user(name) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        };
    }
    let settings = match settings::Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    telemetry::init(&settings.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(&e.into()),
    };
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Up(commands::StartArgs::default())) {
            Command::Up(args) => commands::up(&settings, args).await,
            Command::Api(args) => commands::api(&settings, args).await,
            Command::Worker(args) => commands::worker(&settings, args).await,
            Command::Migrate => commands::migrate(&settings).await,
            Command::Sandbox { port, host } => commands::sandbox((host, port).into()).await,
            Command::Keys(KeysCommand::Rotate { batch }) => commands::keys_rotate(&settings, batch).await,
            Command::Keys(KeysCommand::Generate) => unreachable!("handled before the runtime starts"),
            Command::Pause(args) => ops::pause(&settings, args).await,
            Command::Resume(args) => ops::resume(&settings, args).await,
            Command::Concurrency(args) => ops::concurrency(&settings, args).await,
            Command::Status => ops::status(&settings).await,
            Command::Ops(_) => unreachable!("handled before the runtime starts"),
        }
    });
    // Don't wait for stray blocking tasks (e.g. a pool still closing) past the grace periods.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// One line on stderr, the cause chain included, and a non-zero exit: no panic, no backtrace.
/// Causes whose text the previous message already carries (sqlx repeats its source) are
/// left out.
fn fail(e: &anyhow::Error) -> ExitCode {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !line.contains(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    eprintln!("socialsync: error: {line}");
    ExitCode::FAILURE
}
