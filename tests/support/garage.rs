//! A Garage server on loopback for the object-storage tests: one per test
//! binary, started on first use in a temporary directory with a single
//! node (replication factor 1), its S3 API and RPC bound to free ports of
//! 127.0.0.1, a bucket and a key allowed to read and write it, and
//! `data_fsync`/`metadata_fsync` on, as the README asks of a backup server,
//! so that an acknowledged PUT is on disk.
//!
//! Owns finding the `garage` binary (on `PATH`, then `~/.cargo/bin`),
//! starting it so that it stops with the test process (it runs under a
//! shell that kills it when the test's pipe to it closes), and the
//! credentials file the tests hand to the destination. When Garage is
//! absent it says so on stderr, and under `CI=true` it panics rather than
//! let the tests pass without it. It must not be used for anything but
//! tests.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The key the tests import (Garage's key ids are `GK` and 24 hex digits).
pub const KEY_ID: &str = "GK0c1b0ac4e0b1ec7e57c0ffee";
/// Its secret.
pub const SECRET: &str = "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7";
/// The bucket the tests write under.
pub const BUCKET: &str = "cln-backup-tests";

/// A running Garage.
pub struct Garage {
    dir: tempfile::TempDir,
    config: PathBuf,
    binary: PathBuf,
    /// The S3 endpoint, `http://127.0.0.1:PORT`.
    pub endpoint: String,
    // Held for the process's life: closing it stops the server.
    _keeper: Child,
}

static GARAGE: OnceLock<Option<Garage>> = OnceLock::new();

/// The `garage` binary: on `PATH`, or in `~/.cargo/bin`.
fn find_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("garage")).find(|c| c.is_file()))
        .unwrap_or_default();
    on_path.or_else(|| {
        let home = std::env::var_os("HOME")?;
        let c = Path::new(&home).join(".cargo/bin/garage");
        c.is_file().then_some(c)
    })
}

/// The test binary's Garage, started on first use; `None` when Garage is
/// absent (said on stderr; a panic under `CI=true`).
pub fn garage() -> Option<&'static Garage> {
    GARAGE
        .get_or_init(|| match find_binary() {
            Some(binary) => Some(Garage::start(binary)),
            None => {
                let msg = "garage not found on PATH or in ~/.cargo/bin: the object-storage tests against a real \
                           server did not run (install Garage 2.x: cargo install garage)";
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("{msg}");
                }
                eprintln!("SKIPPED: {msg}");
                None
            }
        })
        .as_ref()
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local address").port()
}

impl Garage {
    fn start(binary: PathBuf) -> Garage {
        let dir = tempfile::tempdir().expect("temporary directory for Garage");
        let (rpc, s3) = (free_port(), free_port());
        let config = dir.path().join("garage.toml");
        std::fs::write(
            &config,
            format!(
                "metadata_dir = \"{meta}\"\n\
                 data_dir = \"{data}\"\n\
                 db_engine = \"sqlite\"\n\
                 data_fsync = true\n\
                 metadata_fsync = true\n\
                 replication_factor = 1\n\
                 rpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_public_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_secret = \"{secret}\"\n\
                 [s3_api]\n\
                 s3_region = \"garage\"\n\
                 api_bind_addr = \"127.0.0.1:{s3}\"\n",
                meta = dir.path().join("meta").display(),
                data = dir.path().join("data").display(),
                secret = "7e57".repeat(16),
            ),
        )
        .expect("write Garage's configuration");
        let log = std::fs::File::create(dir.path().join("server.log")).expect("Garage's log file");
        // The shell starts the server, waits for its stdin (our pipe) to
        // close, which happens when the test process ends, and stops it.
        let keeper = Command::new("sh")
            .arg("-c")
            .arg("\"$0\" -c \"$1\" server & pid=$!; cat >/dev/null; kill $pid; wait $pid; rm -rf \"$2\"")
            .arg(&binary)
            .arg(&config)
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start garage server");
        let g = Garage { dir, config, binary, endpoint: format!("http://127.0.0.1:{s3}"), _keeper: keeper };
        // `node id` answers from the metadata directory before the server
        // listens; `status` needs its RPC port, as the layout commands do.
        g.until_ok(&["status"]);
        let node = g.until_ok(&["node", "id", "-q"]);
        let node = node.trim().split('@').next().unwrap_or_default().to_string();
        g.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        g.cli(&["layout", "apply", "--version", "1"]);
        g.cli(&["key", "import", "-n", "tests", "--yes", KEY_ID, SECRET]);
        g.until_ok(&["bucket", "create", BUCKET]);
        g.cli(&["bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", KEY_ID]);
        g
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.binary).arg("-c").arg(&self.config).args(args).output().expect("run the garage CLI")
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "garage {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Retry a command while the server comes up (a generous bound: this is
    /// waiting for readiness, not measuring it).
    fn until_ok(&self, args: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.run(args);
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
                panic!(
                    "garage {args:?} still fails after a minute: {}\nserver log:\n{log}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `s3://BUCKET/prefix`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{BUCKET}/{prefix}")
    }

    /// A credentials file for this server in `dir` (the `AWS_*` lines the
    /// destination reads before the environment).
    pub fn credentials_file(&self, dir: &Path) -> PathBuf {
        let path = dir.join("s3.env");
        let mut f = std::fs::File::create(&path).expect("credentials file");
        writeln!(
            f,
            "# Garage on loopback\nAWS_ACCESS_KEY_ID={KEY_ID}\nAWS_SECRET_ACCESS_KEY={SECRET}\n\
             AWS_ENDPOINT={}\nAWS_REGION=garage\nAWS_ALLOW_HTTP=true",
            self.endpoint
        )
        .expect("write credentials file");
        path
    }
}
