//! `cln-backup import`: move a Python-plugin `.dbak` backup into a new store.
//!
//! Owns reporting what the import kept and dropped, and, with
//! `--lightning-dir`, moving the node over: the checks and the lock swap are
//! in [`super::handover`]. Reading the legacy file,
//! dropping rewound transactions and building the store all or nothing are
//! the library's (`cln_backup::legacy::import_new`); this file must not
//! write the store itself.

use super::{finish_bar, handover, plural, progress_bar, progress_callback, store_path};
use anyhow::Result;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
#[command(
    about = "Import a legacy .dbak backup into a new store",
    long_about = "Import a backup file written by the Python backup plugin into a new store.\n\n\
        Every whole record is read to the end of the file. A transaction the Python plugin \
        rewound but left in the file (followed by its replacement with the same version) is \
        dropped, not replayed; lone PRAGMA reports are kept in order. The store is built \
        beside STORE and renamed into place only when complete: a failed import leaves no \
        store. An existing STORE is refused.\n\n\
        With --lightning-dir DIR (the node's network directory, the node stopped), the node is \
        moved over from the Python plugin: DIR/backup.lock must name LEGACY.dbak (or be \
        absent). After the import, the new store and the .dbak are both restored into a \
        temporary directory and compared row by row, and DIR/lightningd.sqlite3, when \
        present, must equal them. Only then is STORE given DIR's owner and group (the user \
        lightningd runs as; as root only) and DIR/backup.lock rewritten to point at it, \
        the old one kept as DIR/backup.lock.python (which must not exist yet). If a check \
        fails, backup.lock is left as it was and the new store is removed."
)]
pub struct Args {
    /// The node's network directory whose backup.lock names LEGACY.dbak: repoint it at STORE.
    #[arg(long, value_name = "DIR")]
    pub lightning_dir: Option<PathBuf>,
    /// The legacy backup file.
    #[arg(value_name = "LEGACY.dbak")]
    pub legacy: PathBuf,
    /// The store to create: a path or a file:// URL.
    #[arg(value_name = "STORE")]
    pub store: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let store = store_path(&args.store)?;
    if let Some(dir) = &args.lightning_dir {
        // Everything that can be checked before the import is.
        handover::precheck(dir, &args.legacy, handover::KEPT_PYTHON)?;
    }
    // The bar's length is the count the legacy header keeps; a bad header is
    // reported by the import itself.
    let records = cln_backup::legacy::DbakReader::open(&args.legacy).map(|f| f.header().version_count);
    let bar = progress_bar(records.unwrap_or(0), "import");
    let imported = cln_backup::legacy::import_new_with_progress(&args.legacy, &store, progress_callback(&bar).as_ref());
    finish_bar(bar);
    let report = imported?;
    println!(
        "Imported {} into {}: version {}, {}{}",
        args.legacy.display(),
        store.display(),
        report.version,
        plural(report.changes, "change"),
        report.snapshot_version.map(|v| format!(" after a snapshot at version {v}")).unwrap_or_default()
    );
    if report.rewound > 0 {
        println!("Dropped {} that lightningd never committed", plural(report.rewound, "rewound transaction"));
    }
    if report.unacknowledged > 0 {
        println!("Dropped the last record, which the plugin never acknowledged");
    }
    if let Some(dir) = &args.lightning_dir {
        for line in handover::finish(&store, &args.legacy, dir, &store, handover::KEPT_PYTHON)? {
            println!("{line}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use clap::Parser;

    #[test]
    fn arguments() {
        let cli = Cli::try_parse_from(["cln-backup", "import", "old.dbak", "file:///b/new.redb"]).unwrap();
        match cli.command {
            Command::Import(a) => {
                assert_eq!(a.legacy, std::path::PathBuf::from("old.dbak"));
                assert_eq!(a.store, std::path::PathBuf::from("file:///b/new.redb"));
            }
            other => panic!("parsed as {other:?}"),
        }
        assert!(Cli::try_parse_from(["cln-backup", "import", "old.dbak"]).is_err());
        let cli = Cli::try_parse_from(["cln-backup", "import", "--lightning-dir", "/ln/bitcoin", "o.dbak", "n.redb"]);
        match cli.unwrap().command {
            Command::Import(a) => assert_eq!(a.lightning_dir, Some(std::path::PathBuf::from("/ln/bitcoin"))),
            other => panic!("parsed as {other:?}"),
        }
    }
}
