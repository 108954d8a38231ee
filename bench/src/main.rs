//! `socialsync-bench`: runs the benchmarks and prints BENCHMARKS.md's table rows.
//! Needs a PostgreSQL server (`TEST_DATABASE_URL`, as the tests; each run uses a fresh database).

use clap::{Parser, ValueEnum};

#[derive(Parser)]
#[command(about = "socialsync's benchmarks, each beside a baseline measured in the same run")]
struct Args {
    /// Which benchmark.
    #[arg(value_enum, default_value = "all")]
    which: Which,
    /// `full` is what BENCHMARKS.md reports; `tiny` only checks that everything still runs.
    #[arg(long, value_enum, default_value = "full")]
    size: Size,
    /// Throughput and pacing: this many jobs (syncs) instead of the size's.
    #[arg(long)]
    jobs: Option<usize>,
    /// Throughput only: this concurrency instead of 1, 16 and 64.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Throughput only: bare apalis' handlers take this many milliseconds instead of none.
    #[arg(long, default_value_t = 0)]
    bare_handler_ms: u64,
    /// Throughput only: socialsync's processing and its statements alone, without bare
    /// apalis and the one-by-one enqueue (for profiling; minutes shorter).
    #[arg(long)]
    processing_only: bool,
    /// Pacing only: the workers' `PACING_MARGIN_MS` instead of its default (20 ms), to measure
    /// what a smaller margin trades.
    #[arg(long)]
    pacing_margin_ms: Option<f64>,
    /// Pacing only: the spacing between starts instead of 50 ms (production's default: 2000;
    /// best with `--jobs 200`, 7 minutes).
    #[arg(long, default_value_t = bench::pacing::SPACING_MS)]
    pacing_spacing_ms: i64,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    All,
    Fanout,
    Pickup,
    Dashboard,
    Memory,
    Api,
    Orphans,
    Pacing,
    Throughput,
    Graphile,
    History,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Size {
    Tiny,
    Full,
    /// `full`, and the throughput benchmark with 200 000 jobs too (half an hour and more).
    Huge,
}

// As many runtime threads as cores, as the `socialsync` binary has (`TOKIO_WORKER_THREADS` overrides).
#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = Args::parse();
    let full = args.size != Size::Tiny;
    // Before the table: its figures depend on the connection (a line the table's `grep "^|"` leaves out).
    println!("Database: {}.", bench::connection().await);
    println!("{}", bench::HEADER);
    let want = |w: Which| args.which == Which::All || args.which == w;
    if want(Which::Fanout) {
        println!("{}", bench::fanout::run(if full { 100_000 } else { 500 }).await.row());
    }
    if want(Which::Pickup) {
        for f in bench::pickup::run(if full { 200 } else { 5 }).await {
            println!("{}", f.row());
        }
    }
    if want(Which::Memory) {
        for f in bench::memory::run(if full { 20_000 } else { 200 }).await {
            println!("{}", f.row());
        }
    }
    if want(Which::Orphans) {
        println!("{}", bench::orphans::run(if full { 50 } else { 3 }).await.row());
    }
    if want(Which::Throughput) {
        let (sizes, concurrencies): (&[usize], &[usize]) = match args.size {
            Size::Tiny => (&[200], &[4]),
            Size::Full => (&[20_000], &[1, 16, 64]),
            Size::Huge => (&[20_000, 200_000], &[1, 16, 64]),
        };
        let (jobs, concurrency) = (args.jobs.map(|n| [n]), args.concurrency.map(|c| [c]));
        let sizes = jobs.as_ref().map_or(sizes, |n| n.as_slice());
        let concurrencies = concurrency.as_ref().map_or(concurrencies, |c| c.as_slice());
        for f in bench::throughput::run(sizes, concurrencies, std::time::Duration::from_millis(args.bare_handler_ms), args.processing_only).await {
            println!("{}", f.row());
        }
    }
    if want(Which::Graphile) {
        let (sizes, concurrencies, rounds): (&[usize], &[usize], usize) = match args.size {
            Size::Tiny => (&[200], &[4], 1),
            _ => (&[20_000, 200_000], &[16, 64], 2),
        };
        let sizes = args.jobs.as_ref().map_or(sizes, std::slice::from_ref);
        let concurrencies = args.concurrency.as_ref().map_or(concurrencies, std::slice::from_ref);
        for f in bench::graphile::run(sizes, concurrencies, rounds).await {
            println!("{}", f.row());
        }
    }
    if want(Which::Pacing) {
        for f in bench::pacing::run(args.jobs.unwrap_or(if full { 2000 } else { 10 }), args.pacing_spacing_ms, args.pacing_margin_ms).await {
            println!("{}", f.row());
        }
    }
    if want(Which::Api) {
        for f in bench::api::run(if full { 10 } else { 1 }).await {
            println!("{}", f.row());
        }
    }
    if want(Which::History) {
        for f in bench::history::run(if full { 100_000 } else { 200 }).await {
            println!("{}", f.row());
        }
    }
    if want(Which::Dashboard) {
        for f in bench::dashboard::run(if full { 1_000_000 } else { 2_000 }).await {
            println!("{}", f.row());
        }
    }
}
