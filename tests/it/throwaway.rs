//! A PostgreSQL cluster of a test's own, for tests that stop or crash the
//! database (never the shared server): `initdb` into a temp dir, `pg_ctl`
//! on a free port, removed on drop. As in `scripts/lib-postgres.sh`, the
//! server runs as the `postgres` user when the tests run as root.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct ThrowawayPg {
    dir: tempfile::TempDir,
    bindir: PathBuf,
    port: u16,
    /// The maintenance database's URL.
    pub url: String,
}

fn bindir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    dirs.retain(|d| d.join("initdb").exists() && d.join("pg_ctl").exists());
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(Path::file_name)
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop()
        .expect("PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"))
}

/// Runs a server binary as the cluster's owner.
fn as_owner(program: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args).current_dir("/");
    cmd.output().unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl ThrowawayPg {
    pub fn start() -> Self {
        let bindir = bindir();
        let dir = tempfile::Builder::new()
            .prefix("latchkey-pg.")
            .tempdir_in("/tmp")
            .unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .arg("postgres:")
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(ok.success(), "chown of the cluster directory");
        }
        let data = dir.path().join("data");
        let out = as_owner(
            &bindir.join("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "--auth=trust",
                "-U",
                "postgres",
                "--no-sync",
                "--encoding=UTF8",
                "--locale=C",
            ],
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let pg = Self {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            dir,
            bindir,
            port,
        };
        pg.start_again();
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Starts the (stopped) cluster on its port again.
    pub fn start_again(&self) {
        let options = format!(
            "-k {} -p {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100",
            self.dir.path().display(),
            self.port
        );
        let log = self.dir.path().join("server.log").display().to_string();
        let out = as_owner(
            &self.bindir.join("pg_ctl"),
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "-o",
                &options,
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the cluster the way a crash would: no shutdown checkpoint, every
    /// backend killed at once, open connections cut mid-query.
    pub fn crash(&self) {
        let out = as_owner(
            &self.bindir.join("pg_ctl"),
            &[
                "-D",
                &self.data(),
                "-m",
                "immediate",
                "-w",
                "-t",
                "30",
                "stop",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for ThrowawayPg {
    fn drop(&mut self) {
        if self.dir.path().join("data/postmaster.pid").exists() {
            let _ = as_owner(
                &self.bindir.join("pg_ctl"),
                &[
                    "-D",
                    &self.data(),
                    "-m",
                    "immediate",
                    "-w",
                    "-t",
                    "30",
                    "stop",
                ],
            );
        }
    }
}
