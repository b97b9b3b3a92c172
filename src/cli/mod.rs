//! The `cln-backup` command line: argument parsing and what the subcommands share.
//!
//! Owns the clap definitions, progress bars and the formatting of sizes and
//! times; store arguments (plain paths and `file://` URLs) are mapped to
//! files by the library's `destination` module. Each subcommand lives in its own file beside this one and is a thin
//! front end over the library: it must not implement backup logic itself
//! (storing, replaying or compacting belongs to `cln_backup`).
//!
//! Adding a subcommand is two lines here: its `mod` line and its entry in the
//! `subcommands!` list; the file provides `Args` (clap) and `run(Args)`.

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use cln_backup::restore::{Progress, DB_FILE_NAME};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod compact;
mod export;
pub(crate) mod handover;
mod import;
mod info;
mod init;
mod restore;
mod server;
mod verify;

/// Declares the subcommand enum and its dispatch from one list of
/// `Variant => module` pairs; each module has `Args` and `run(Args)`.
macro_rules! subcommands {
    ($($variant:ident => $module:ident),* $(,)?) => {
        /// The subcommands.
        #[derive(Debug, Subcommand)]
        pub enum Command {
            $($variant($module::Args),)*
        }

        impl Command {
            /// Run the chosen subcommand.
            pub fn run(self) -> Result<()> {
                match self {
                    $(Command::$variant(args) => $module::run(args),)*
                }
            }
        }
    };
}

subcommands! {
    Init => init,
    Restore => restore,
    Info => info,
    Verify => verify,
    Compact => compact,
    Import => import,
    Export => export,
    Server => server,
}

/// Durable, exact backups of a Core Lightning node's database.
#[derive(Debug, Parser)]
#[command(
    name = "cln-backup",
    version,
    about = "Durable, exact backups of a Core Lightning node's database",
    long_about = "Durable, exact backups of a Core Lightning node's database.\n\n\
        Started by lightningd (as an important-plugin) cln-backup records every database \
        transaction in a backup store before lightningd commits it. From the command line \
        it creates stores, restores lightningd.sqlite3 from them, shows what they hold, \
        verifies them and compacts them.\n\n\
        A STORE is a file path or a file:// URL (file:///var/backups/node.redb); init, \
        restore, info and verify also take socket:host:port (a backup server) and object \
        storage (s3://bucket/prefix, gs://, az://).\n\n\
        Logging goes to stderr; set RUST_LOG (for example RUST_LOG=debug) for more.",
    propagate_version = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What a remote SOURCE or DEST needs beyond its URL: shared by `init`,
/// `restore`, `info` and `verify`.
#[derive(Debug, Default, clap::Args)]
pub struct RemoteArgs {
    /// Object storage: a file holding the encryption key (64 hex characters;
    /// `init` creates it with a new random key when it does not exist).
    #[arg(long, value_name = "FILE", conflicts_with = "hsm_secret")]
    pub key_file: Option<PathBuf>,
    /// Object storage: derive the encryption key from this hsm_secret
    /// (`init`: DIR/hsm_secret by default).
    #[arg(long, value_name = "FILE")]
    pub hsm_secret: Option<PathBuf>,
    /// Object storage: a file of AWS_*=value lines, read before the environment.
    #[arg(long, value_name = "FILE")]
    pub credentials_file: Option<PathBuf>,
    /// socket: a file holding the server's pre-shared token.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

impl RemoteArgs {
    /// Open `arg`, a socket: or object-storage URL, for reading.
    pub fn open_read_only(&self, arg: &Path) -> Result<Box<dyn cln_backup::Destination>> {
        use cln_backup::destination::{open_with, Access, OpenOptions};
        let mut options = OpenOptions::new(Access::ReadOnly);
        options.key = match (&self.key_file, &self.hsm_secret) {
            (Some(f), _) => Some(cln_backup::encryption::KeySource::KeyFile(f.clone())),
            (None, Some(f)) => Some(cln_backup::encryption::KeySource::HsmSecret(f.clone())),
            (None, None) => None,
        };
        options.credentials_file = self.credentials_file.clone();
        options.token_file = self.token_file.clone();
        Ok(open_with(arg, &options)?)
    }
}

/// Whether a SOURCE argument names a remote destination (`socket:` or
/// object storage) rather than a local file.
pub fn is_remote(arg: &Path) -> Result<bool> {
    Ok(!matches!(cln_backup::destination::parse(arg)?, cln_backup::destination::Location::File(_)))
}

/// The local file a store argument names: a plain path, or a `file://`
/// URL; other schemes are refused naming the URL (see
/// [`cln_backup::destination::parse`], which owns the rules).
pub fn store_path(arg: &Path) -> Result<PathBuf> {
    Ok(cln_backup::destination::local_path(arg)?)
}

/// `err` as one line naming `path`: prefixed with it unless the message
/// already names it (library errors about a version, such as
/// `NotRestorable`, do not know which file was asked).
pub fn naming(path: &Path, err: impl Into<anyhow::Error>) -> anyhow::Error {
    let err = err.into();
    let shown = path.display().to_string();
    if format!("{err:#}").contains(&shown) {
        err
    } else {
        err.context(shown)
    }
}

/// `n` and the noun, in the singular for 1: `1 change`, `2 changes`.
/// `noun` is the singular; the plural adds `s`.
pub fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Check that `dir` is a node's network directory (where lightningd.sqlite3
/// and backup.lock live), not lightningd's base directory above it: a base
/// directory (no database of its own, one under a network directory) is
/// refused with the network directory to use instead.
pub fn check_network_dir(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        bail!("{}: the lightning directory does not exist or is not a directory", dir.display());
    }
    let below = cln_backup::restore::networks_below(dir);
    if let Some(first) = below.first() {
        bail!(
            "{}: is lightningd's base directory, not a network directory: the node's {DB_FILE_NAME} is in {}; \
             pass --lightning-dir {}",
            dir.display(),
            below.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(" and "),
            first.display()
        );
    }
    Ok(())
}

/// A progress bar on stderr when stderr is a terminal, `None` otherwise.
pub fn progress_bar(len: u64, message: &'static str) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let style = ProgressStyle::with_template("{msg:>12} [{wide_bar}] {human_pos}/{human_len} ({eta})")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let bar = ProgressBar::new(len).with_style(style).with_message(message);
    Some(bar)
}

/// The library's progress callback driving `bar`.
///
/// A bar's length is sometimes only an estimate (a `.dbak` header's record
/// count, which the Python plugin does not always keep): a position past it
/// stretches the bar instead of showing `46/0`.
pub fn progress_callback(bar: &Option<ProgressBar>) -> Option<Progress> {
    bar.clone().map(|bar| {
        Arc::new(move |n: u64| {
            if bar.length().is_some_and(|len| n > len) {
                bar.set_length(n);
            }
            bar.set_position(n);
        }) as Progress
    })
}

/// Remove a progress bar from the terminal before printing results.
pub fn finish_bar(bar: Option<ProgressBar>) {
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

/// `1234567 bytes (1.18 MiB)`.
pub fn bytes(n: u64) -> String {
    if n < 1024 {
        plural(n, "byte")
    } else {
        format!("{n} bytes ({})", indicatif::HumanBytes(n))
    }
}

/// Milliseconds since the Unix epoch as an ISO 8601 UTC time, to the second.
pub fn utc_time(ms: u64) -> String {
    cln_backup::utc_iso8601(ms, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn store_arguments() {
        assert_eq!(store_path(Path::new("file:///var/b/node.redb")).unwrap(), PathBuf::from("/var/b/node.redb"));
        assert_eq!(
            store_path(Path::new("file://localhost/var/b/node.redb")).unwrap(),
            PathBuf::from("/var/b/node.redb")
        );
        assert_eq!(store_path(Path::new("rel/node.redb")).unwrap(), PathBuf::from("rel/node.redb"));
        // Remote locations are not local files: each is refused naming the URL.
        for arg in ["socket:127.0.0.1:9000", "s3://bucket/node.redb", "gs://b/x", "az://c/x"] {
            let err = store_path(Path::new(arg)).unwrap_err().to_string();
            assert!(err.starts_with(arg), "{err}");
            assert!(!err.contains("remote stores are not supported yet"), "{err}");
            assert!(is_remote(Path::new(arg)).unwrap_or(true), "{arg}");
        }
        for (arg, scheme) in [
            ("s3:bucket/node.redb", "s3:"),
            ("https://example.com/x", "https:"),
            ("http://example.com/x", "http:"),
            ("sftp://host/x", "sftp:"),
            ("webdav://host/x", "webdav:"),
        ] {
            let err = store_path(Path::new(arg)).unwrap_err().to_string();
            assert!(err.starts_with(arg) && err.contains(&format!("the {scheme} scheme is not supported")), "{err}");
        }
        assert!(!is_remote(Path::new("file:///b/node.redb")).unwrap());
        // A colon in a plain file name is not a scheme.
        assert_eq!(store_path(Path::new("node:1.redb")).unwrap(), PathBuf::from("node:1.redb"));
        assert_eq!(store_path(Path::new("C:x")).unwrap(), PathBuf::from("C:x"));
        let host = store_path(Path::new("file://example.com/x")).unwrap_err();
        assert!(host.to_string().contains("absolute path"));
    }

    #[test]
    fn plurals() {
        assert_eq!(plural(0, "change"), "0 changes");
        assert_eq!(plural(1, "change"), "1 change");
        assert_eq!(plural(2, "statement"), "2 statements");
    }

    #[test]
    fn base_directories_are_refused_with_the_network_directory() {
        let dir = tempfile::tempdir().unwrap();
        check_network_dir(dir.path()).unwrap();
        let net = dir.path().join("regtest");
        std::fs::create_dir(&net).unwrap();
        std::fs::write(net.join(DB_FILE_NAME), b"").unwrap();
        let err = check_network_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("base directory") && err.contains(&format!("--lightning-dir {}", net.display())), "{err}");
        check_network_dir(&net).unwrap();
        let missing = check_network_dir(&dir.path().join("nope")).unwrap_err().to_string();
        assert!(missing.contains("does not exist"), "{missing}");
    }

    #[test]
    fn sizes() {
        assert_eq!(bytes(12), "12 bytes");
        assert_eq!(bytes(1), "1 byte");
        assert_eq!(bytes(2048), "2048 bytes (2.00 KiB)");
    }

    #[test]
    fn a_subcommand_is_required() {
        let err = Cli::try_parse_from(["cln-backup"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand);
        let err = Cli::try_parse_from(["cln-backup", "frobnicate"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::InvalidSubcommand);
    }
}
