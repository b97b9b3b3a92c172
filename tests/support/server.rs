//! `cln-backup server` run by the tests: the real binary on a store of its
//! own, on loopback.

use super::run;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

/// `cln-backup server` on a store of its own, the real binary.
pub struct Server {
    child: Child,
    pub addr: String,
    store: PathBuf,
}

impl Server {
    /// Start it on `store`, listening on `listen` (`127.0.0.1:0` for any port).
    pub fn start(store: &Path, listen: &str) -> Server {
        let mut child = run::command()
            .arg("server")
            .arg("--listen")
            .arg(listen)
            .arg(store)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("server on {} did not start: {line:?}", store.display());
        };
        Server { addr: addr.to_string(), child, store: store.to_path_buf() }
    }

    /// Its `socket:` URL.
    pub fn url(&self) -> String {
        format!("socket:{}", self.addr)
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The same server again, on the same address.
    pub fn restart(&mut self) {
        *self = Server::start(&self.store.clone(), &self.addr.clone());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
