//! A private Postgres cluster for a chaos run (`--backend postgres-managed`), so that the
//! run can stop the database the way a crash does (`pg_ctl stop -m immediate`: no
//! checkpoint, recovery from the WAL at the next start) without touching anyone else's.
//!
//! The server binaries (initdb, pg_ctl) come from `/usr/lib/postgresql/<newest>/bin`
//! (Debian's postgresql package) or `pg_config --bindir`. Postgres refuses to run as
//! root: as root, every command runs as the `postgres` user through `runuser`, and the
//! cluster's directory is handed to that user.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A running private cluster in a temporary directory; dropped, it is stopped.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

/// The directory of initdb and pg_ctl.
fn bin_dir() -> Result<PathBuf, String> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("pg_ctl").exists())
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let out = Command::new("pg_config").arg("--bindir").output();
    if let Some(o) = out.ok().filter(|o| o.status.success()) {
        let bin = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        if bin.join("pg_ctl").exists() {
            return Ok(bin);
        }
    }
    Err("no Postgres server binaries (initdb, pg_ctl) in /usr/lib/postgresql/*/bin or pg_config --bindir: install the postgresql package".into())
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

impl Cluster {
    /// Creates the cluster (initdb, trust authentication on 127.0.0.1) and starts it on
    /// a free port.
    pub fn start() -> Result<Cluster, String> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("winmdm-chaos-pg")
            .tempdir()
            .map_err(|e| format!("temporary cluster dir: {e}"))?;
        let as_postgres = is_root();
        if as_postgres {
            run(Command::new("chown").arg("postgres:").arg(dir.path()))?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("picking a port: {e}"))?
            .port();
        let c = Cluster {
            dir,
            bin,
            port,
            as_postgres,
        };
        let data = c.data();
        c.run_pg(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        c.start_again()?;
        Ok(c)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// `postgres://` URL of the cluster's `postgres` database (trust authentication).
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the cluster and waits until it accepts connections (after an immediate
    /// stop, that includes crash recovery).
    pub fn start_again(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        self.run_pg(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-o",
                &options,
                "-w",
                "-t",
                "120",
                "start",
            ],
        )
    }

    /// Stops the cluster like a crash: `pg_ctl stop -m immediate` (no checkpoint).
    pub fn stop_immediate(&self) -> Result<(), String> {
        self.run_pg(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        )
    }

    fn run_pg(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let exe = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args).current_dir(self.dir.path());
        run(&mut cmd).map_err(|e| format!("{e} (log: {})", log_tail(self.dir.path())))
    }
}

fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("running {cmd:?}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop_immediate();
    }
}
