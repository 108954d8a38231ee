//! Runs the real `socialsync` binary as a child process and watches what it prints.

#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Settings a test must not inherit from the developer's shell.
const CLEARED: &[&str] = &[
    "DATABASE_URL", "DATABASE_MAX_CONNECTIONS", "DATABASE_TIMEOUT_SECS", "BIND_ADDR", "DATA_DIR",
    "ENCRYPTION_KEY", "ENCRYPTION_KEYS_PREVIOUS", "CRON_JOB_SECRET", "JWT_SECRET",
    "NOTIFY_WEBHOOK_URL", "NOTIFY_WEBHOOK_SECRET", "INSTAGRAM_CLIENT_ID", "INSTAGRAM_CLIENT_SECRET",
    "INSTAGRAM_REDIRECT_URI", "TIKTOK_CLIENT_KEY", "TIKTOK_CLIENT_SECRET", "TIKTOK_REDIRECT_URI",
    "MIGRATE_ON_START", "LOG_FORMAT", "SOCIALSYNC_CONFIG", "RUST_LOG", "FRONTEND_URL", "SERVICE_TOKEN",
    "RATE_LIMITS", "TRUSTED_PROXIES", "KEEP_HISTORY_ON_DISCONNECT", "MAX_BODY_BYTES", "OPS_PASSWORD", "DASHBOARD_READ_ONLY",
    "CLOCK_OFFSET_SECS", "SANDBOX", "SANDBOX_URL", "SANDBOX_ADMIN_TOKEN",
];

pub mod fleet;

pub fn command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_socialsync"));
    cmd.args(args).current_dir(dir);
    for name in CLEARED {
        cmd.env_remove(name);
    }
    cmd.env("BIND_ADDR", "127.0.0.1:0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs to completion; returns (status, stdout, stderr).
pub fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let out = command(dir, args, env).output().expect("socialsync runs");
    (out.status, String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// [`run`] with `input` on standard input.
pub fn run_with_input(dir: &Path, args: &[&str], env: &[(&str, &str)], input: &str) -> (ExitStatus, String, String) {
    use std::io::Write as _;
    let mut child = command(dir, args, env).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("socialsync runs");
    child.stdin.take().expect("piped").write_all(input.as_bytes()).expect("written");
    let out = child.wait_with_output().expect("socialsync ends");
    (out.status, String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// A running `socialsync` process; killed on drop if still running.
pub struct Proc {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    pub fn spawn(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut child = command(dir, args, env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("socialsync starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>, Box::new(child.stderr.take().unwrap())] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Proc { child, lines }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits until a printed line satisfies `pred`; returns it. Panics with the output so far
    /// if the process exits first or `timeout` passes.
    pub fn wait_for_line(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.lines.lock().unwrap().iter().find(|l| pred(l)) {
                return l.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Give the reader threads a moment to drain what was printed before exiting.
                std::thread::sleep(Duration::from_millis(100));
                if let Some(l) = self.lines.lock().unwrap().iter().find(|l| pred(l)) {
                    return l.clone();
                }
                panic!("socialsync exited ({status}) before printing the line; output:\n{}", self.output());
            }
            assert!(Instant::now() < deadline, "line not printed within {timeout:?}; output:\n{}", self.output());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The `http://…` address `up` prints.
    pub fn wait_for_url(&mut self) -> String {
        let line = self.wait_for_line(Duration::from_secs(60), |l| l.contains("socialsync is up on http://") || l.contains("API listening"));
        let start = line.find("http://").map(|i| i + 7).or_else(|| line.find("addr=").map(|i| i + 5)).expect("an address");
        let addr: String = line[start..].chars().take_while(|c| !c.is_whitespace()).collect();
        format!("http://{addr}")
    }

    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill").arg(format!("-{name}")).arg(self.pid().to_string()).status().unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit; returns its status and how long that took.
    pub fn wait_exit(&mut self, timeout: Duration) -> (ExitStatus, Duration) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, start.elapsed());
            }
            assert!(start.elapsed() < timeout, "still running after {timeout:?}; output:\n{}", self.output());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `url`; returns status and JSON body.
pub async fn get_json(url: &str) -> (u16, serde_json::Value) {
    let resp = reqwest::get(url).await.expect("the server answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("a JSON body"))
}
