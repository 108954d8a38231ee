//! Every benchmark at a tiny size, so the program keeps working between the runs by hand.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_benchmark_runs_at_a_tiny_size() {
    let connection = bench::connection().await;
    assert!(connection.starts_with("PostgreSQL ") && [" with TLS (", " without TLS", " a Unix socket"].iter().any(|t| connection.contains(t)), "{connection}");
    let mut figures = vec![bench::fanout::run(300).await];
    figures.extend(bench::memory::run(200).await);
    figures.extend(bench::pickup::run(3).await);
    figures.extend(bench::api::run(1).await);
    figures.push(bench::orphans::run(3).await);
    figures.extend(bench::pacing::run(10, bench::pacing::SPACING_MS, None).await);
    figures.extend(bench::throughput::run(&[200], &[4], std::time::Duration::ZERO, false).await);
    // `--processing-only`: socialsync's two rows; only the no-op row has its baseline (the
    // statements alone), the other says it was not run.
    let alone = bench::throughput::run(&[200], &[4], std::time::Duration::ZERO, true).await;
    assert_eq!(alone.len(), 2, "{alone:?}");
    assert!(alone[0].value > 0.0 && alone[0].baseline > 0.0 && alone[0].baseline_name.contains("statements alone"), "{alone:?}");
    assert!(alone[1].value > 0.0 && alone[1].baseline.is_nan() && alone[1].row().contains("| – |"), "{alone:?}");
    // Without the npm registry graphile-worker is not run, and its row says why.
    for f in bench::graphile::run(&[200], &[4], 1).await {
        assert!(f.value > 0.0, "{f:?}");
        assert!(f.baseline > 0.0 || (f.baseline.is_nan() && f.baseline_name.contains("not run")), "{f:?}");
        println!("{}", f.row());
    }
    let history = bench::history::run(200).await;
    assert!(history[0].name.contains("rows removed") && !history[0].name.contains("(0 rows"), "the pass at day 30 deletes: {history:?}");
    figures.extend(history);
    let pages = bench::dashboard::run(1_000).await;
    assert_eq!(pages.len(), 11, "the overview and ten more pages");
    figures.extend(pages);
    for f in &figures {
        assert!(f.value >= 0.0 && f.baseline > 0.0, "{f:?}");
        println!("{}", f.row());
    }
}
