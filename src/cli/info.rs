//! `cln-backup info`: what a store holds.
//!
//! Owns presenting the library's `Status` (as text, or as JSON with a few
//! extra figures), and for a remote copy what its destination reports
//! (`Destination::summary`). It must not change the store.
//!
//! Decision: the restorable range names each end's version with the time
//! the store received it (to the second; `--json` gives milliseconds), so
//! that a `restore --to-time` can be chosen from it. Times a store never
//! recorded (changes imported from a `.dbak` file) are shown as such.

use super::{bytes, is_remote, plural, store_path, utc_time, RemoteArgs};
use anyhow::Result;
use cln_backup::version::data_version;
use cln_backup::version::Seq;
use cln_backup::{Reader, SnapshotInfo, Status, Store, TIME_NOT_RECORDED};
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
#[command(
    about = "Show what a backup store holds",
    long_about = "Show what a backup store holds: its version and previous version, the \
        number of changes, the range of versions a restore can produce with the times the \
        store received them, every snapshot kept (its version, when the store received that \
        version, when the snapshot was stored, its size and stored bytes), the changes since \
        the newest snapshot, sizes, when the store was created and when it was last \
        compacted.\n\n\
        The store is opened read-only and its file is never changed, so it may be on read-only \
        media. A store that a running plugin holds is refused: stop the node first, or ask the \
        plugin with lightning-cli backup-status.\n\n\
        A remote copy (socket:host:port, or object storage such as s3://bucket/prefix, with \
        --token-file, --key-file or --hsm-secret, --credentials-file as it needs) shows what \
        its destination reports: head, previous version, restorable range and snapshot."
)]
pub struct Args {
    /// The store: a path or a file:// URL.
    #[arg(value_name = "STORE")]
    pub store: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(
        long,
        long_help = "Print one JSON object instead of text. Fields: path, format, version \
            (data_version at the head), seq (the head as a store version: equal to version until \
            data_version wraps past 2^32), prev_version (null when no change follows the snapshot), \
            rewind_allowed, changes, changes_since_snapshot and bytes_since_snapshot (the \
            changes after the newest snapshot and their stored bytes), snapshot (the newest: \
            null, or {seq, version, size, stored_bytes, created_ms, version_time_ms, \
            foreign_keys}), snapshots (every snapshot kept, oldest first, each as snapshot), \
            restorable ({from, to}: the data_versions a restore can produce), range_times \
            ({from, to}: when the store received those versions, or version 1 for a log that \
            starts from the empty version 0; each null when not recorded; null for a store \
            without a change), file_bytes, stored_change_bytes, created_ms, \
            last_compaction (null, or {time_ms, snapshot_seq, changes_before, changes_after, \
            duration_ms}), compacting. created_ms is when a snapshot was stored, \
            version_time_ms when the store received the version it holds. Times are \
            milliseconds since the Unix epoch."
    )]
    pub json: bool,
    /// What a remote STORE needs.
    #[command(flatten)]
    pub remote: RemoteArgs,
}

pub fn run(args: Args) -> Result<()> {
    if is_remote(&args.store)? {
        let dest = args.remote.open_read_only(&args.store)?;
        let summary = dest.summary().map_err(|e| super::naming(&args.store, e))?;
        let kind = cln_backup::destination::parse(&args.store).map(|l| cln_backup::destination::kind(&l))?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&remote_json(dest.location(), kind, &summary))?);
        } else {
            for line in remote_text(dest.location(), kind, &summary) {
                println!("{line}");
            }
        }
        return Ok(());
    }
    let store = Store::open_read_only(store_path(&args.store)?)?;
    let status = store.status()?;
    let reader = store.reader()?;
    let change_bytes = reader.stored_change_bytes()?;
    let times = range_times(&reader)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&as_json(&status, change_bytes, times.as_ref())?)?);
    } else {
        for line in as_text(&status, change_bytes, times.as_ref()) {
            println!("{line}");
        }
    }
    Ok(())
}

/// The ends of the restorable range that hold a database, each with the
/// time the store received it ([`TIME_NOT_RECORDED`] when it recorded
/// none). Version 0 of a log without a snapshot is the empty database, which
/// is not restored: the range then starts at the first change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RangeTimes {
    from: (Seq, u64),
    to: (Seq, u64),
}

/// [`RangeTimes`] of the store `reader` reads; `None` when it holds no
/// database yet (no snapshot and no change).
fn range_times(reader: &Reader) -> Result<Option<RangeTimes>> {
    let (lo, hi) = reader.restorable();
    let from = if lo == 0 && reader.snapshot_for(0).is_none() { 1 } else { lo };
    if from > hi {
        return Ok(None);
    }
    let at = |seq: Seq| -> Result<(Seq, u64)> { Ok((seq, reader.time_of(seq)?)) };
    Ok(Some(RangeTimes { from: at(from)?, to: at(hi)? }))
}

/// A time the store received a version, to the second, or that it has none.
fn received(ms: u64) -> String {
    if ms == TIME_NOT_RECORDED {
        "time not recorded".to_string()
    } else {
        utc_time(ms)
    }
}

/// The status as one JSON object, with the extras. Each figure appears once:
/// the restorable range is `{"from", "to"}` in data_versions, as the
/// plugin's `backup-status` gives it (the store-version pair is left out),
/// and the times of its ends are `range_times` (a key of its own: `restorable` stays the one figure of the range).
fn as_json(status: &Status, change_bytes: u64, times: Option<&RangeTimes>) -> Result<Value> {
    let mut v = serde_json::to_value(status)?;
    if let Value::Object(map) = &mut v {
        map.insert("stored_change_bytes".into(), json!(change_bytes));
        map.insert(
            "restorable".into(),
            json!({"from": data_version(status.restorable.0), "to": data_version(status.restorable.1)}),
        );
        let ms = |t: u64| if t == TIME_NOT_RECORDED { Value::Null } else { json!(t) };
        map.insert(
            "range_times".into(),
            match times {
                Some(t) => json!({"from": ms(t.from.1), "to": ms(t.to.1)}),
                None => Value::Null,
            },
        );
    }
    Ok(v)
}

/// A remote copy's summary as JSON: `url`, `kind`, `version`,
/// `prev_version`, `rewind_allowed`, `restorable` (`{from, to}` or null),
/// `snapshot_version`.
fn remote_json(url: &str, kind: &str, s: &cln_backup::destination::Summary) -> Value {
    json!({
        "url": url,
        "kind": kind,
        "version": s.head.version,
        "prev_version": s.head.prev_version,
        "rewind_allowed": s.head.rewind_allowed,
        "restorable": s.restorable.map(|(from, to)| json!({"from": from, "to": to})),
        "snapshot_version": s.snapshot_version,
        "details": s.details.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
    })
}

fn remote_text(url: &str, kind: &str, s: &cln_backup::destination::Summary) -> Vec<String> {
    let mut out = vec![format!("Destination:      {url} ({kind})")];
    out.push(format!("Version:          {}", s.head.version));
    out.push(match s.head.prev_version {
        Some(p) => {
            format!("Previous version: {p} (rewind {})", if s.head.rewind_allowed { "allowed" } else { "not allowed" })
        }
        None => "Previous version: none".to_string(),
    });
    out.push(match s.snapshot_version {
        Some(v) => format!("Snapshot:         version {v}"),
        None => "Snapshot:         not reported".to_string(),
    });
    out.push(match s.restorable {
        Some((from, to)) => format!("Restorable:       versions {from} to {to}"),
        None => "Restorable:       not reported".to_string(),
    });
    for (label, value) in &s.details {
        out.push(format!("{:<18}{value}", format!("{label}:")));
    }
    out
}

fn as_text(s: &Status, change_bytes: u64, times: Option<&RangeTimes>) -> Vec<String> {
    let mut out = vec![format!("Store:            {}", s.path.display())];
    out.push(format!("Format:           {}", s.format));
    let seq = if u64::from(s.version) != s.seq { format!(" (store version {})", s.seq) } else { String::new() };
    out.push(format!("Version:          {}{seq}", s.version));
    out.push(match s.prev_version {
        Some(p) => {
            format!("Previous version: {p} (rewind {})", if s.rewind_allowed { "allowed" } else { "not allowed" })
        }
        None if s.snapshot.is_some() => "Previous version: none (no change after the snapshot)".to_string(),
        None => "Previous version: none (the store holds no change yet)".to_string(),
    });
    out.push(format!("Changes:          {} ({} stored)", s.changes, bytes(change_bytes)));
    out.push(match &s.snapshot {
        Some(snap) => format!(
            "Since snapshot:   {} ({} stored) after version {}",
            plural(s.changes_since_snapshot, "change"),
            bytes(s.bytes_since_snapshot),
            snap.version
        ),
        None => format!(
            "Since snapshot:   {} ({} stored); no snapshot yet, the log starts at version 0",
            plural(s.changes_since_snapshot, "change"),
            bytes(s.bytes_since_snapshot)
        ),
    });
    out.push(format!("Restorable:       {}", restorable_text(s, times)));
    if s.snapshots.is_empty() {
        out.push("Snapshots:        none (the log starts at version 0)".to_string());
    } else {
        out.push(format!("Snapshots:        {} kept, oldest first", s.snapshots.len()));
        out.extend(s.snapshots.iter().map(snapshot_line));
    }
    out.push(format!("File size:        {}", bytes(s.file_bytes)));
    out.push(format!("Created:          {}", utc_time(s.created_ms)));
    out.push(match &s.last_compaction {
        Some(c) => format!(
            "Last compaction:  {} (snapshot at version {}, {} before, {} after, {} ms)",
            utc_time(c.time_ms),
            data_version(c.snapshot_seq),
            plural(c.changes_before, "change"),
            c.changes_after,
            c.duration_ms
        ),
        None => "Last compaction:  never".to_string(),
    });
    out
}

/// `versions 5 (2026-12-01T10:00:00Z) to 8 (2026-12-07T09:59:59Z)`, with
/// what [`cln_backup::version::range_text`] adds about version 0.
fn restorable_text(s: &Status, times: Option<&RangeTimes>) -> String {
    let Some(t) = times else {
        return cln_backup::version::range_text(s.restorable.0, s.restorable.1, s.snapshot.is_some());
    };
    let zero = if s.snapshot.is_none() && s.restorable.0 == 0 {
        "; 0 is the empty database before the first change"
    } else {
        ""
    };
    format!(
        "versions {} ({}) to {} ({}){zero}",
        data_version(t.from.0),
        received(t.from.1),
        data_version(t.to.0),
        received(t.to.1)
    )
}

/// One snapshot kept, as a line under `Snapshots:`.
fn snapshot_line(snap: &SnapshotInfo) -> String {
    format!(
        "  version {}: received {}, stored {}, {}, {} stored",
        snap.version,
        received(snap.version_time_ms),
        utc_time(snap.created_ms),
        bytes(snap.size),
        bytes(snap.stored_bytes)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("cln-backup").chain(args.iter().copied()))?;
        match cli.command {
            Command::Info(a) => Ok(a),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn arguments() {
        let a = parse(&["info", "node.redb"]).unwrap();
        assert!(!a.json);
        assert_eq!(a.store, PathBuf::from("node.redb"));
        assert!(parse(&["info", "--json", "node.redb"]).unwrap().json);
        assert_eq!(parse(&["info"]).unwrap_err().kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn text_and_json_report_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path().join("s.redb")).unwrap();
        store
            .add_change(
                1,
                &[
                    "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
                    "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
                    cln_backup::version::bump_statement(1),
                ],
            )
            .unwrap();
        let status = store.status().unwrap();
        let times = range_times(&store.reader().unwrap()).unwrap();
        let t = times.unwrap();
        assert_eq!((t.from.0, t.to.0), (1, 1));
        assert!(t.from.1 > 0 && t.from.1 == t.to.1, "{t:?}");
        let text = as_text(&status, 99, times.as_ref());
        assert!(text.iter().any(|l| l == "Version:          1"), "{text:?}");
        assert!(text.iter().any(|l| l == "Previous version: 0 (rewind allowed)"), "{text:?}");
        assert!(text.iter().any(|l| l == "Changes:          1 (99 bytes stored)"), "{text:?}");
        assert!(
            text.iter().any(|l| l
                == &format!(
                    "Restorable:       versions 1 ({0}) to 1 ({0}); 0 is the empty database before the first change",
                    utc_time(t.from.1)
                )),
            "{text:?}"
        );
        assert!(text.iter().any(|l| l == "Snapshots:        none (the log starts at version 0)"), "{text:?}");
        assert!(text.iter().any(|l| l.starts_with("Since snapshot:   1 change (")), "{text:?}");
        let v = as_json(&status, 99, times.as_ref()).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["changes"], 1);
        assert_eq!(v["stored_change_bytes"], 99);
        assert_eq!(v["restorable"], json!({"from": 0, "to": 1}));
        assert!(v.get("restorable_versions").is_none());
        assert_eq!(v["range_times"], json!({"from": t.from.1, "to": t.to.1}));
        assert_eq!(v["changes_since_snapshot"], 1);
        assert_eq!(v["snapshots"], json!([]));

        // An empty store has no range to time.
        let empty = Store::create(dir.path().join("e.redb")).unwrap();
        assert_eq!(range_times(&empty.reader().unwrap()).unwrap(), None);
        let text = as_text(&empty.status().unwrap(), 0, None);
        assert!(text.iter().any(|l| l == "Restorable:       none yet, the backup holds no change"), "{text:?}");
        assert_eq!(as_json(&empty.status().unwrap(), 0, None).unwrap()["range_times"], Value::Null);
    }
}
