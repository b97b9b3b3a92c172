//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, off by
//! default, hidden from the documentation).
//!
//! Owns one function per parser that reads bytes from outside (a store's
//! record and segment envelopes and their statement codec, the socket
//! protocol's packets, the Python plugin's `.dbak`), each taking any bytes
//! and returning nothing: a fuzzer looks for panics, hangs and runaway
//! memory, and every error is a fine answer. Also the seeds of the corpora,
//! built with the project's own encoders so they follow the formats as they
//! are, and the test that replays every seed and every committed crasher.
//! It must not be used by anything but the fuzz targets and that test.

use crate::record::{codec, Meta, SnapshotHeader, StoredChange, StoredPart};

/// A store's change record (envelope, then its statements), read as a
/// snapshot header and as metadata too, and the statement codec alone.
pub fn store_record(bytes: &[u8]) {
    if let Ok(rec) = StoredChange::from_bytes(bytes) {
        let _ = rec.decode(1);
    }
    let _ = SnapshotHeader::from_bytes(bytes);
    let _ = Meta::from_bytes(bytes);
    let _ = codec::decode(bytes);
}

/// A sealed segment, and every record in it as [`store_record`] reads one.
pub fn sealed_segment(bytes: &[u8]) {
    for record in crate::store::segment_records(bytes).unwrap_or_default() {
        store_record(&record);
    }
}

/// One packet of the socket protocol as a server or a client reads it.
pub fn socket_packet(bytes: &[u8]) {
    crate::destination::read_one_packet(bytes);
}

/// A `.dbak` file: its layout, the records that count, and their statements
/// and snapshot.
pub fn dbak(bytes: &[u8]) {
    let Ok(mut file) = tempfile::NamedTempFile::new() else { return };
    if std::io::Write::write_all(&mut file, bytes).is_err() {
        return;
    }
    let path = file.path();
    let _ = crate::legacy::restorable(path, None);
    let Ok(mut reader) = crate::legacy::DbakReader::open(path) else { return };
    let Ok(records) = reader.scan() else { return };
    for rec in records.iter().take(64) {
        let _ = reader.statements(rec);
        let _ = reader.copy_snapshot(rec, &mut std::io::sink());
    }
}

/// Seeds, by target name: real-shaped inputs made by the encoders.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let statements: Vec<Vec<String>> = vec![
        vec![
            "INSERT INTO invoices (id, label, preimage) VALUES (7, 'coffee ''best''', x'00ff10a0b0c0d0e0f0')".into(),
            crate::version::bump_statement(42),
        ],
        vec!["PRAGMA foreign_keys = OFF;".into()],
        vec![
            "UPDATE channels SET next_index=5, last_tx=x'0200000001' WHERE id=3".into(),
            "DELETE FROM htlcs WHERE channel_id=3".into(),
            crate::version::bump_statement(43),
        ],
    ];
    let mut out = Vec::new();
    let mut records = Vec::new();
    let mut prev = [0u8; 32];
    for (i, stmts) in statements.iter().enumerate() {
        let Ok(encoded) = codec::encode(stmts) else { continue };
        out.push(("store_record", encoded.clone()));
        let part = StoredPart { time_ms: 1_700_000_000_000 + i as u64, statements: encoded };
        let rec = StoredChange::new(&prev, 42 + i as u64, vec![part]);
        prev = rec.hash;
        if let Ok(bytes) = rec.to_bytes() {
            out.push(("store_record", bytes.clone()));
            records.push(bytes);
        }
    }
    if let Some(segment) = crate::store::segment_bytes(42, records) {
        out.push(("sealed_segment", segment));
    }
    for packet in crate::destination::sample_packets(&statements[0]) {
        out.push(("socket_packet", packet));
    }
    if let Some(dbak) = small_dbak(&statements) {
        out.push(("dbak", dbak));
    }
    out
}

fn small_dbak(statements: &[Vec<String>]) -> Option<Vec<u8>> {
    let file = tempfile::NamedTempFile::new().ok()?;
    let mut w = crate::legacy::DbakWriter::new(file.reopen().ok()?, file.path()).ok()?;
    let image = b"SQLite format 3\0not a real image, a seed".to_vec();
    w.add_snapshot(41, image.len() as u64, &mut image.as_slice()).ok()?;
    w.add_transaction(42, &statements[0]).ok()?;
    w.add_transaction(42, &statements[1]).ok()?;
    w.finish().ok()?;
    std::fs::read(file.path()).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    fn target(name: &str) -> fn(&[u8]) {
        match name {
            "store_record" => super::store_record,
            "sealed_segment" => super::sealed_segment,
            "socket_packet" => super::socket_packet,
            "dbak" => super::dbak,
            other => panic!("no fuzz target {other}"),
        }
    }

    /// Every seed, and every input a fuzzer once crashed on (committed under
    /// `fuzz/regressions/<target>/`), goes through its target without a
    /// panic.
    #[test]
    fn seeds_and_past_crashers_run_clean() {
        let seeds = super::seeds();
        for name in ["store_record", "sealed_segment", "socket_packet", "dbak"] {
            assert!(seeds.iter().any(|(t, _)| *t == name), "no seed for {name}");
        }
        for (name, bytes) in &seeds {
            target(name)(bytes);
        }
        // `.ci/fuzz` seeds its corpora from here.
        if let Some(corpus) = std::env::var_os("CLN_BACKUP_FUZZ_SEEDS") {
            for (i, (name, bytes)) in seeds.iter().enumerate() {
                let dir = std::path::Path::new(&corpus).join(name);
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join(format!("seed-{i}")), bytes).unwrap();
            }
        }
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
        let Ok(targets) = std::fs::read_dir(&dir) else { return };
        for t in targets {
            let t = t.unwrap();
            let name = t.file_name().to_string_lossy().into_owned();
            if name == "plugin_message" {
                // The plugin's framing is in the binary: its crashers are
                // replayed by the plugin's own tests.
                continue;
            }
            for input in std::fs::read_dir(t.path()).unwrap() {
                let input = input.unwrap().path();
                target(&name)(&std::fs::read(&input).unwrap());
            }
        }
    }
}
