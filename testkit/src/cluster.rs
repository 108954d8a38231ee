//! A PostgreSQL cluster of a test's own, in a temporary folder, that the test may stop and start
//! (a database restart) without disturbing the tests sharing the machine's server.

use std::{
    path::PathBuf,
    process::Command,
};

/// A private cluster on a free port; stopped and removed on drop.
pub struct Cluster {
    /// `postgres://socialsync@127.0.0.1:PORT/postgres` (trust authentication).
    pub url: String,
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl Cluster {
    /// Initialises and starts a cluster from the installed PostgreSQL binaries. As root, the
    /// cluster belongs to the `postgres` account (initdb refuses to run as root).
    pub fn start() -> Cluster {
        let bin = installed_bin().expect("PostgreSQL's server binaries (initdb, pg_ctl) are installed");
        let dir = tempfile::Builder::new().prefix("socialsync-cluster").tempdir().expect("a temporary folder");
        if is_root() {
            run(Command::new("chown").arg("postgres").arg(dir.path()));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let c = Cluster { url: format!("postgres://socialsync@127.0.0.1:{port}/postgres"), bin, dir, port };
        run(c.pg("initdb").arg("-D").arg(c.data()).args(["-U", "socialsync", "--auth=trust", "--no-sync"]));
        c.start_again();
        c
    }

    /// Stops the server (fast shutdown: clients are disconnected), waiting until it is down.
    pub fn stop(&self) {
        run(self.pg("pg_ctl").arg("-D").arg(self.data()).args(["-m", "fast", "-w", "stop"]));
    }

    /// Starts the stopped server, waiting until it accepts connections.
    pub fn start_again(&self) {
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", self.port, self.dir.path().display());
        run(self.pg("pg_ctl").arg("-D").arg(self.data()).arg("-l").arg(self.dir.path().join("log")).args(["-w", "-o", &options, "start"]));
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.pg("pg_ctl").arg("-D").arg(self.data()).args(["-m", "immediate", "stop"]).output();
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// The newest `/usr/lib/postgresql/N/bin`, or wherever `initdb` is on the PATH.
fn installed_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql").ok()?.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).filter(|b| b.join("initdb").exists()).collect();
    versions.sort_by_key(|p| p.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok()));
    versions.pop()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}
