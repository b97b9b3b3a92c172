//! `cln-backup export`: write a store out as a legacy `.dbak`, a SQL change
//! log, or a full SQL dump.
//!
//! Owns choosing the format and the version, and, with `--lightning-dir`,
//! moving the node back to the Python plugin (checks and lock swap in
//! [`super::handover`]). The formats are the library's
//! (`cln_backup::legacy` for `.dbak`, `cln_backup::export` for SQL and the
//! dump); this file must not write them itself.

use super::{finish_bar, progress_bar, progress_callback, store_path};
use anyhow::Result;
use cln_backup::{export, legacy, Store};
use std::path::PathBuf;

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The Python backup plugin's file format, which its `backup-cli restore` accepts.
    Dbak,
    /// Human-readable SQL.
    Sql,
}

#[derive(Debug, clap::Args)]
#[command(
    about = "Export a store as a legacy .dbak file or as SQL",
    long_about = "Export a store.\n\n\
        --format dbak writes the Python backup plugin's file format (snapshot, then one record \
        per transaction), which its backup-cli restore accepts.\n\
        --format sql writes the change log as flat SQL, one block per version with a comment \
        line giving the version and time; with --dump it writes instead a full schema-and-data \
        dump of the database at the version, like sqlite3's .dump.\n\n\
        --to-version N exports up to an earlier version still held by the store. An existing \
        OUT is refused unless --force is given.\n\n\
        With --format dbak --lightning-dir DIR (the node's network directory, the node \
        stopped), the node is moved back to the Python plugin: DIR/backup.lock must name \
        STORE (or be absent). After the export, OUT and the store are both restored into a \
        temporary directory and compared row by row, and DIR/lightningd.sqlite3, when \
        present, must equal them. Only then is OUT given DIR's owner and group (the user \
        lightningd runs as; as root only) and DIR/backup.lock rewritten in the Python \
        plugin's format to point at it, the old one kept as DIR/backup.lock.cln-backup \
        (which must not exist yet). If a check fails, backup.lock is left as it was and OUT \
        is removed."
)]
pub struct Args {
    /// With --format dbak: the node's network directory whose backup.lock names STORE: repoint it at OUT.
    #[arg(long, value_name = "DIR")]
    pub lightning_dir: Option<PathBuf>,
    /// The output format.
    #[arg(long, value_enum)]
    pub format: Format,
    /// With --format sql: a full schema-and-data dump instead of the change log.
    #[arg(long)]
    pub dump: bool,
    /// Export up to this data_version instead of the latest.
    #[arg(long, value_name = "N")]
    pub to_version: Option<u64>,
    /// Replace OUT if it exists.
    #[arg(long)]
    pub force: bool,
    /// The store: a path or a file:// URL.
    #[arg(value_name = "STORE")]
    pub store: PathBuf,
    /// The file to write.
    #[arg(value_name = "OUT")]
    pub out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    if args.dump && args.format != Format::Sql {
        anyhow::bail!("--dump writes SQL: use it with --format sql");
    }
    if let Some(dir) = &args.lightning_dir {
        if args.format != Format::Dbak {
            anyhow::bail!("--lightning-dir points the node at the exported file: use it with --format dbak");
        }
        if args.to_version.is_some() {
            anyhow::bail!(
                "{}: --lightning-dir with --to-version would point the node at an older state than its own; \
                 export the head",
                dir.display()
            );
        }
        super::handover::precheck(dir, &store_path(&args.store)?, super::handover::KEPT_CLN_BACKUP)?;
    }
    let store = Store::open_read_only(store_path(&args.store)?)?;
    let reader = store.reader()?;
    let upto = reader.target(args.to_version).map_err(|e| super::naming(store.path(), e))?;
    // Changes up to `upto`: records are consecutive from the base.
    let bar = progress_bar(upto.saturating_sub(reader.restorable().0), "export");
    let progress = progress_callback(&bar);
    let exported = match (args.format, args.dump) {
        (Format::Dbak, _) => legacy::export_dbak(&reader, upto, &args.out, args.force, progress.as_ref()),
        (Format::Sql, false) => export::export_sql(&reader, upto, &args.out, args.force, progress.as_ref()),
        (Format::Sql, true) => export::export_dump(&reader, upto, &args.out, args.force, progress.as_ref()),
    };
    finish_bar(bar);
    let report = exported.map_err(super::restore::with_flags)?;
    println!(
        "Exported {} at version {} to {} ({}, {})",
        store.path().display(),
        report.version,
        report.path.display(),
        super::plural(report.records, "record"),
        super::plural(report.bytes, "byte")
    );
    println!("{}", report.ownership.set_line(&report.path));
    if let Some(dir) = &args.lightning_dir {
        let store_file = store.path().to_path_buf();
        // The checks open the store again: let go of it first.
        drop(reader);
        drop(store);
        let lines =
            super::handover::finish(&store_file, &report.path, dir, &report.path, super::handover::KEPT_CLN_BACKUP)?;
        for line in lines {
            println!("{line}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("cln-backup").chain(args.iter().copied()))?;
        match cli.command {
            Command::Export(a) => Ok(a),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn arguments() {
        let a = parse(&["export", "--format", "dbak", "s.redb", "out.dbak"]).unwrap();
        assert_eq!((a.format, a.dump, a.to_version, a.force), (Format::Dbak, false, None, false));
        let a = parse(&["export", "--format", "sql", "--dump", "--to-version", "9", "--force", "s", "o"]).unwrap();
        assert_eq!((a.format, a.dump, a.to_version, a.force), (Format::Sql, true, Some(9), true));
        assert!(parse(&["export", "s", "o"]).is_err(), "the format is required");
        assert!(parse(&["export", "--format", "csv", "s", "o"]).is_err());
    }

    #[test]
    fn dump_needs_sql() {
        let a = parse(&["export", "--format", "dbak", "--dump", "s", "o"]).unwrap();
        let err = run(a).unwrap_err().to_string();
        assert!(err.contains("--format sql"), "{err}");
    }
}
