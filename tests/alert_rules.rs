//! The Prometheus alert rules in `deploy/prometheus/`: valid, each firing on the series that
//! should fire it and quiet on those that should not (`promtool test rules`), and naming only
//! metrics socialsync exports.
//!
//! Needs `promtool` (Debian's `prometheus` package; `.ci/run` installs it).

use std::{path::Path, process::Command};

const RULES: &str = "deploy/prometheus/socialsync-rules.yml";
const TESTS: &str = "deploy/prometheus/socialsync-rules.test.yml";

fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("promtool: {e} (apt-get install prometheus)"));
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_rules_are_valid_and_each_fires_only_when_it_should() {
    let (ok, out) = promtool(&["check", "rules", RULES]);
    assert!(ok, "{out}");
    let (ok, out) = promtool(&["test", "rules", TESTS]);
    assert!(ok && out.contains("SUCCESS"), "{out}");
}

#[test]
fn every_rule_names_a_metric_socialsync_exports() {
    let rules = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(RULES)).unwrap();
    let mut source = String::new();
    for dir in ["jobs/src", "worker/src", "api/src", "src"] {
        read_rs(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir), &mut source);
    }
    let mut named: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("socialsync_") && w.len() > "socialsync_".len())
        .collect();
    named.sort_unstable();
    named.dedup();
    assert!(named.len() >= 6, "{named:?}");
    for metric in named {
        assert!(source.contains(&format!("\"{metric}\"")), "{metric} is in the rules but no code exports it");
    }
}

fn read_rs(dir: &Path, into: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            read_rs(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
}
