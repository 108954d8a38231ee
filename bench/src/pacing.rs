//! Pacing under load: three `socialsync worker` processes, sync concurrency 16 each, TikTok
//! spacing 50 ms (or another: production's default is 2 s), N syncs against the sandbox in a
//! process of its own (its TikTok quota lifted: 600 calls a minute is below this pace). Read
//! from the platform's request log, to the microsecond: sync starts (profile reads) closer than
//! the spacing, and the achieved start rate beside the bound the spacing sets (the baseline;
//! their ratio is the share of the bound).

use std::time::{Duration, Instant};

use jobs::{AccountId, Timestamp, Vault, VaultKey, sync};
use serde_json::json;
use testkit::platform::SandboxServer;

use crate::{Figure, memory::spawn};

/// The spacing the pacing target is set at: 40 times tighter than production's default (2 s),
/// so the margin against jitter weighs 40 times more in each gap.
pub const SPACING_MS: i64 = 50;

/// `spacing_ms`: the workers' `PACING_TIKTOK_MS`; `margin_ms`: their `PACING_MARGIN_MS`, or
/// their default.
pub async fn run(n: usize, spacing_ms: i64, margin_ms: Option<f64>) -> Vec<Figure> {
    let (db, store, _pool) = crate::database().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("an address").port();
    let _platform = spawn(&["sandbox", "--port", &port.to_string()], &[]);
    let sb = SandboxServer::remote(&format!("http://127.0.0.1:{port}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while reqwest::get(format!("{}/_admin/clock", sb.url)).await.is_err() {
        assert!(Instant::now() < deadline, "the sandbox did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sb.settings(json!({ "tiktok_requests_per_minute": 1_000_000 })).await;
    let key = VaultKey::generate();
    let vault = Vault::new(VaultKey::parse(key.expose()).expect("a fresh key parses"), vec![]);
    let accounts = testkit::platform::connected_accounts_with(&store, &sb, &vault, n, 1).await;
    let spacing = spacing_ms.to_string();
    let margin = margin_ms.map(|ms| ms.to_string());
    let mut env = vec![
        ("DATABASE_URL", db.url.as_str()),
        ("ENCRYPTION_KEY", key.expose().as_str()),
        ("SANDBOX", "true"),
        ("SANDBOX_URL", sb.url.as_str()),
        ("SYNC_CONCURRENCY", "16"),
        ("PACING_TIKTOK_MS", spacing.as_str()),
        ("CRON_REFRESH", "0 0 1 1 *"),
        ("CRON_SYNC", "0 0 1 1 *"),
    ];
    env.extend(margin.as_deref().map(|m| ("PACING_MARGIN_MS", m)));
    let _workers: Vec<_> = (0..3).map(|_| spawn(&["worker", "--no-migrate"], &env)).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.worker_processes(Timestamp::now()).await.expect("readable").len() < 3 {
        assert!(Instant::now() < deadline, "the workers did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log_start = sb.last_request_seq().await;
    let jobs: Vec<_> = accounts.iter().map(|(id, _)| sync::job(*id, sync::SyncReason::Manual, Timestamp::now())).collect();
    for chunk in jobs.chunks(1000) {
        store.enqueue_many(chunk).await.expect("enqueued");
    }
    let ids: Vec<AccountId> = accounts.iter().map(|a| a.0).collect();
    let deadline = Instant::now() + Duration::from_secs(30 + n as u64 * spacing_ms as u64 * 3 / 1000);
    while !testkit::all_accounts(&store, &ids, |a| a.last_synced_at.is_some()).await {
        assert!(Instant::now() < deadline, "the syncs did not finish");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let starts = sb.arrivals_us("user/info", log_start).await;
    assert_eq!(starts.len(), n, "one profile read per sync");
    let gaps: Vec<i64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    let violations = gaps.iter().filter(|g| **g < spacing_ms * 1000).count();
    // The spread of the gaps shows how much jitter the margin each slot adds has to cover.
    let mut sorted = gaps.clone();
    sorted.sort();
    let q = |p: f64| sorted[((sorted.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    let mean = gaps.iter().sum::<i64>() as f64 / gaps.len().max(1) as f64 / 1000.0;
    eprintln!("pacing gaps at the platform, ms: least {:.1}, 1st percentile {:.1}, median {:.1}, mean {mean:.2}, 99th {:.1}, most {:.1}", q(0.0), q(0.01), q(0.5), q(0.99), q(1.0));
    let span_s = (starts[n - 1] - starts[0]) as f64 / 1_000_000.0;
    drop(db);
    vec![
        Figure {
            name: format!("pacing, 3 processes × 16, {spacing_ms} ms spacing{}, {n} syncs: achieved start rate", margin.map_or(String::new(), |m| format!(" + {m} ms margin"))),
            value: (n - 1) as f64 / span_s.max(1e-9),
            baseline_name: "the bound the spacing sets".into(),
            baseline: 1000.0 / spacing_ms as f64,
            unit: "starts/s",
            target: "≥ 99 % of the bound".into(),
        },
        Figure {
            name: format!("pacing: starts closer than {spacing_ms} ms (closest gap {:.1} ms)", gaps.iter().min().copied().unwrap_or(0) as f64 / 1000.0),
            value: violations as f64,
            baseline_name: "gaps measured".into(),
            baseline: gaps.len() as f64,
            unit: "",
            target: "0".into(),
        },
    ]
}
