//! The systemd units in `deploy/systemd/`: `systemd-analyze verify` accepts them (with
//! `ExecStart` pointed at this build's binary, which verify requires to exist), and their
//! offline security exposure stays "OK" (at most 2.0 of 10).

use std::process::Command;

const UNITS: [&str; 2] = ["socialsync-api.service", "socialsync-worker.service"];

fn analyze(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("systemd-analyze").args(args).current_dir(dir).output().unwrap_or_else(|e| panic!("systemd-analyze: {e} (apt-get install systemd)"));
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_units_verify_and_are_hardened() {
    let dir = tempfile::tempdir().unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd");
    for unit in UNITS {
        let text = std::fs::read_to_string(src.join(unit)).unwrap();
        assert!(text.contains("ExecStart=/usr/local/bin/socialsync "), "{unit} runs the installed binary");
        let here = text.replace("ExecStart=/usr/local/bin/socialsync ", &format!("ExecStart={} ", env!("CARGO_BIN_EXE_socialsync")));
        std::fs::write(dir.path().join(unit), here).unwrap();
    }
    let paths: Vec<String> = UNITS.iter().map(|u| format!("./{u}")).collect();
    let mut args = vec!["verify"];
    args.extend(paths.iter().map(String::as_str));
    let (ok, out) = analyze(dir.path(), &args);
    assert!(ok && out.trim().is_empty(), "systemd-analyze verify:\n{out}");
    for unit in &paths {
        let (_, out) = analyze(dir.path(), &["security", "--offline=true", unit]);
        let level: f64 = out
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|l| l.split(": ").nth(1))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level for {unit}:\n{out}"));
        assert!(level <= 2.0, "{unit}: exposure {level}:\n{out}");
    }
}
