//! The ops commands, against `DATABASE_URL`, for scripts and for when the dashboard is down:
//! `pause`, `resume`, `concurrency` and `status` (each change goes into the audit trail, as the
//! dashboard's do); and `ops add-user`, which needs no database.

use std::{fmt::Write as _, time::Duration};

use anyhow::Result;
use jobs::{
    Store, Timestamp,
    pauses::{Pause, Target},
};

use crate::settings::Settings;

#[derive(clap::Args)]
pub struct PauseArgs {
    /// A queue (connect, refresh, sync, notify, event) or a schedule (token_refresh, data_sync, prune).
    what: String,
    /// Only this platform's jobs of the queue (instagram, tiktok; sync and refresh only).
    #[arg(long)]
    platform: Option<String>,
    /// For how long, e.g. 30m or 2h (until `socialsync resume` when absent).
    #[arg(long = "for", value_parser = humantime::parse_duration)]
    lasting: Option<Duration>,
    /// Why: shown on every dashboard page, in the workers' log and in `socialsync status`.
    #[arg(long)]
    reason: String,
    /// Who pauses (default: the user running the command).
    #[arg(long)]
    by: Option<String>,
}

#[derive(clap::Args)]
pub struct ResumeArgs {
    /// What was paused: a queue or a schedule.
    what: String,
    /// The platform, if only its jobs of the queue were paused.
    #[arg(long)]
    platform: Option<String>,
    /// Who resumes (default: the user running the command).
    #[arg(long)]
    by: Option<String>,
}

#[derive(clap::Args)]
pub struct ConcurrencyArgs {
    /// A queue: connect, refresh, sync, notify, event.
    queue: String,
    /// Attempts at once per worker process, 1 to 256.
    n: Option<u32>,
    /// Back to each process's configured concurrency (`*_CONCURRENCY`).
    #[arg(long, conflicts_with = "n")]
    reset: bool,
    /// Who changes it (default: the user running the command).
    #[arg(long)]
    by: Option<String>,
}

pub async fn concurrency(settings: &Settings, args: ConcurrencyArgs) -> Result<()> {
    let Some(queue) = jobs::QUEUES.iter().find(|q| **q == args.queue) else {
        anyhow::bail!("no queue is named {:?}: {}", args.queue, jobs::QUEUES.join(", "));
    };
    let max = jobs::store::MAX_LIVE_CONCURRENCY;
    let by = operator(args.by);
    match (args.n, args.reset) {
        (Some(n), false) if (1..=max).contains(&n) => {
            let store = store(settings).await?;
            let live = jobs::store::LiveConcurrency { queue: (*queue).to_owned(), concurrency: n as i32, set_by: by.clone(), set_at: Timestamp::now() };
            store.set_concurrency(&live).await?;
            audit(&store, &by, "concurrency.set", &format!("{queue}={n}")).await;
            store.close().await;
            println!("The {queue} queue runs {n} attempts at once per worker process; workers apply it within about a second.");
            println!("`socialsync concurrency {queue} --reset` gives each process its configured concurrency back.");
        }
        (Some(n), false) => anyhow::bail!("{n} attempts at once: give 1 to {max} (to stop a queue, pause it)"),
        (None, true) => {
            let store = store(settings).await?;
            let was = store.reset_concurrency(queue).await?;
            audit(&store, &by, "concurrency.reset", queue).await;
            store.close().await;
            match was {
                Some(c) => println!("The {queue} queue is back to each process's configured concurrency (was {} per process, set by {}).", c.concurrency, c.set_by),
                None => println!("The {queue} queue already runs at each process's configured concurrency."),
            }
        }
        _ => anyhow::bail!("give a number (`socialsync concurrency {queue} 4`) or --reset"),
    }
    Ok(())
}

/// Records a command in the audit trail; the command has done its work, so a failure to
/// record is said, not fatal.
async fn audit(store: &Store, actor: &str, action: &str, target: &str) {
    let entry = jobs::store::NewAuditEntry { actor, action, target, outcome: "ok" };
    if let Err(e) = store.audit(&entry, Timestamp::now()).await {
        eprintln!("warning: not recorded in the audit trail: {e}");
    }
}

/// `socialsync ops add-user NAME`: a password from standard input (a line; at least 12
/// characters), NAME's `OPS_USERS` entry on standard output.
pub fn add_user(name: &str) -> Result<()> {
    use std::io::IsTerminal;
    // Typed at a terminal, the password is not echoed (rpassword); piped, it is a line.
    let line = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("Password for {name}: "))?
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line
    };
    let password = jobs::Secret::new(line.trim_end_matches(['\n', '\r']).to_owned());
    let entry = dashboard::operators::line(name, &password).map_err(anyhow::Error::msg)?;
    println!("{entry}");
    eprintln!("Add it to OPS_USERS (entries separated by spaces, newlines or ';') and restart the API processes.");
    Ok(())
}

/// `sync`, or `sync` with `--platform tiktok`.
fn target(what: &str, platform: Option<&str>) -> Result<Target> {
    let t = Target::parse(what).map_err(anyhow::Error::msg)?;
    Ok(match platform {
        Some(p) => t.on_platform(p).map_err(anyhow::Error::msg)?,
        None => t,
    })
}

/// The operator a command acts for: `--by`, or the login name, marked as the command line's.
fn operator(by: Option<String>) -> String {
    by.unwrap_or_else(|| format!("{} (cli)", std::env::var("USER").unwrap_or_else(|_| "unknown".into())))
}

async fn store(settings: &Settings) -> Result<Store> {
    Ok(Store::connect(&settings.database()?).await?)
}

pub async fn pause(settings: &Settings, args: PauseArgs) -> Result<()> {
    let target = target(&args.what, args.platform.as_deref())?;
    if args.reason.trim().is_empty() {
        anyhow::bail!("--reason is empty: say why, for whoever sees the pause");
    }
    let store = store(settings).await?;
    let pause = Pause::new(target, &operator(args.by), args.reason.trim(), Timestamp::now(), args.lasting);
    store.pause(&pause).await?;
    let lasting = args.lasting.map_or_else(|| "until resumed".to_owned(), |d| format!("for {}", humantime::format_duration(d)));
    audit(&store, &pause.paused_by, "pause", &format!("{} {lasting}: {}", pause.scope, pause.reason)).await;
    store.close().await;
    tracing::info!(scope = %pause.scope, paused_by = %pause.paused_by, "paused");
    println!("Paused {target} {}.", pause.describe());
    println!("Workers stop starting its work within about a second; `socialsync resume {}` starts it again.", target.command_args());
    Ok(())
}

pub async fn resume(settings: &Settings, args: ResumeArgs) -> Result<()> {
    let target = target(&args.what, args.platform.as_deref())?;
    let store = store(settings).await?;
    let ended = store.resume(&target.scope()).await?;
    audit(&store, &operator(args.by), "resume", &target.scope()).await;
    store.close().await;
    match ended {
        Some(p) => println!("Resumed {target} (paused {}).", p.describe()),
        None => println!("{} was not paused.", capitalized(&target.to_string())),
    }
    Ok(())
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

pub async fn status(settings: &Settings) -> Result<()> {
    let store = store(settings).await?;
    let now = Timestamp::now();
    let (queues, pauses, processes, live) = tokio::try_join!(store.queue_overview(), store.pauses(now), store.worker_processes(now), store.live_concurrency())?;
    store.close().await;
    print!("{}", render(&queues, &pauses, &processes, &live, now));
    Ok(())
}

/// `socialsync status` as text.
fn render(
    queues: &std::collections::BTreeMap<String, jobs::store::QueueCounts>,
    pauses: &[Pause],
    processes: &[jobs::store::WorkerProcess],
    live: &[jobs::store::LiveConcurrency],
    now: Timestamp,
) -> String {
    let mut out = String::new();
    let ago = |t: Timestamp| humantime::format_duration(Duration::from_secs(t.until(now).as_secs())).to_string();
    let _ = writeln!(out, "{:<9} {:>9} {:>9} {:>8} {:>8} {:>7}  {:<16} paused", "queue", "pending", "scheduled", "running", "retrying", "dead", "oldest pending");
    for name in jobs::QUEUES {
        let q = queues.get(name).cloned().unwrap_or_default();
        let n = |s: &str| q.counts.get(s).copied().unwrap_or(0);
        let oldest = q.oldest_pending.map(|t| format!("{} ago", ago(t))).unwrap_or_else(|| "-".into());
        let paused = jobs::pauses::queue_state(pauses, name, now).map_or_else(|| "-".into(), |s| s.to_uppercase());
        let _ = writeln!(out, "{name:<9} {:>9} {:>9} {:>8} {:>8} {:>7}  {oldest:<16} {paused}", n("pending"), n("scheduled"), n("running"), n("retrying"), n("dead"));
    }
    let _ = writeln!(out, "\npauses:");
    for p in pauses {
        let what = p.target().map_or_else(|| p.scope.clone(), |t| t.to_string());
        let _ = writeln!(out, "  {what}: paused {}", p.describe());
    }
    if pauses.is_empty() {
        let _ = writeln!(out, "  none");
    }
    let _ = writeln!(out, "\nconcurrency set live (per worker process):");
    for c in live {
        let _ = writeln!(out, "  {}: {}, set by {} {} ago", c.queue, c.concurrency, c.set_by, ago(c.set_at));
    }
    if live.is_empty() {
        let _ = writeln!(out, "  none: each process runs its configured concurrency");
    }
    let _ = writeln!(out, "\nworker processes:");
    let live: Vec<_> = processes.iter().filter(|p| p.stopped_at.is_none() && !p.is_stale(now)).collect();
    for p in &live {
        let _ = writeln!(out, "  {} (pid {} on {}), up {}, last heard {} ago", p.name, p.pid, p.host, ago(p.started_at), ago(p.last_seen));
    }
    if live.is_empty() {
        let _ = writeln!(out, "  none running");
    }
    out
}
