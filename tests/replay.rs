//! Restores replay the change log exactly as lightningd executed it: cascades
//! happen, lone `PRAGMA foreign_keys` reports run outside transactions, the
//! u32 wrap keeps its order, earlier versions and compaction give the same
//! databases as applying the transactions directly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use cln_backup::{compact, replay, restore, Change, Error, Store, Transaction};
use std::path::Path;
use support::workload::{self, Txn, Workload};
use support::{add_all, count, reference, restore_to};

fn new_store(dir: &Path) -> Store {
    Store::create(dir.join("node.redb")).expect("create store")
}

/// The transactions reported with `data_version` at or before `v` in log
/// order (every transaction up to the last one reported with `v`).
fn upto(txns: &[Txn], v: u32) -> Vec<Txn> {
    let last = txns.iter().rposition(|(dv, _)| *dv == v).expect("version is in the log");
    txns[..=last].to_vec()
}

#[test]
fn channel_close_cascades_to_htlcs_signatures_and_feerates() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Workload::new(11);
    let mut txns = vec![w.schema(), w.open_channel(), w.open_channel(), w.open_channel()];
    for _ in 0..40 {
        txns.push(w.add_htlc());
        txns.push(w.channel_update());
        txns.push(w.forward());
    }
    let victim = w.open_channels()[1];
    let before_close = w.version();
    txns.push(w.close(victim));
    txns.push(w.block());

    let store = new_store(dir.path());
    add_all(&store, &txns);

    // Before the close the channel has rows in every child table, so the
    // assertions after it can fail.
    let before = restore_to(&store, dir.path(), "before.sqlite3", Some(before_close.into()));
    let filter = format!("channel_id = {victim}");
    assert!(count(&before, "channel_htlcs", &filter) > 0);
    assert!(count(&before, "htlc_sigs", &format!("channelid = {victim}")) > 0);
    assert!(count(&before, "channel_feerates", &filter) > 0);

    let restored = restore_to(&store, dir.path(), "restored.sqlite3", None);
    assert_eq!(count(&restored, "channels", &format!("id = {victim}")), 0);
    assert_eq!(count(&restored, "channel_htlcs", &filter), 0);
    assert_eq!(count(&restored, "htlc_sigs", &format!("channelid = {victim}")), 0);
    assert_eq!(count(&restored, "channel_feerates", &filter), 0);
    // Other channels keep theirs.
    assert!(count(&restored, "channel_htlcs", &format!("channel_id <> {victim}")) > 0);
    // The close statement really is one DELETE: the rest came from cascades.
    let close = &txns[txns.len() - 2].1;
    assert_eq!(close.len(), 2);
    assert_eq!(close[0], format!("DELETE FROM channels WHERE id={victim}"));

    let want = reference(dir.path(), "reference.sqlite3", &txns);
    workload::assert_same_db(&restored, &want);
}

/// Schema, channels with HTLCs, a rebuild of `channels` bracketed by lone
/// pragmas, then more work (including a close, which must cascade again).
fn rebuild_log(seed: u64) -> (Vec<Txn>, Workload) {
    let mut w = Workload::new(seed);
    let mut txns = vec![w.schema(), w.open_channel(), w.open_channel(), w.open_channel()];
    for _ in 0..20 {
        txns.push(w.add_htlc());
        txns.push(w.channel_update());
    }
    txns.extend(w.rebuild_channels());
    for _ in 0..5 {
        txns.push(w.add_htlc());
    }
    (txns, w)
}

fn htlc_total(db: &Path) -> i64 {
    count(db, "channel_htlcs", "1")
}

#[test]
fn table_rebuild_between_lone_pragmas_cascades_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut txns, mut w) = rebuild_log(12);
    let rebuilt_at =
        txns.iter().find(|(_, s)| s.iter().any(|x| x.starts_with("DROP TABLE channels"))).map(|(v, _)| *v).unwrap();
    let victim = w.open_channels()[0];
    txns.push(w.close(victim));

    let store = new_store(dir.path());
    add_all(&store, &txns);

    let restored = restore_to(&store, dir.path(), "restored.sqlite3", None);
    let want = reference(dir.path(), "reference.sqlite3", &txns);
    workload::assert_same_db(&restored, &want);
    // After the rebuild foreign keys were back on: the close cascaded.
    assert_eq!(count(&restored, "channel_htlcs", &format!("channel_id = {victim}")), 0);
    assert!(htlc_total(&restored) > 0);

    // At the rebuild itself every HTLC survived the DROP TABLE.
    let at_rebuild = restore_to(&store, dir.path(), "at-rebuild.sqlite3", Some(rebuilt_at.into()));
    let ref_at_rebuild = reference(dir.path(), "ref-at-rebuild.sqlite3", &upto(&txns, rebuilt_at));
    workload::assert_same_db(&at_rebuild, &ref_at_rebuild);
    let htlcs_added = txns
        .iter()
        .take_while(|(v, _)| *v <= rebuilt_at)
        .filter(|(_, s)| s[0].starts_with("INSERT INTO channel_htlcs"))
        .count() as i64;
    assert!(htlcs_added > 0);
    assert_eq!(htlc_total(&at_rebuild), htlcs_added);

    // Replaying naively (each report in its own transaction, pragmas inside)
    // loses them: SQLite ignores the pragma inside a transaction, so the DROP
    // cascades. This is what the test above distinguishes.
    let naive = dir.path().join("naive.sqlite3");
    let conn = workload::open_like_lightningd(&naive).unwrap();
    for (_, statements) in upto(&txns, rebuilt_at) {
        conn.execute_batch("BEGIN").unwrap();
        for s in &statements {
            conn.execute_batch(s).unwrap();
        }
        conn.execute_batch("COMMIT").unwrap();
    }
    drop(conn);
    assert_eq!(htlc_total(&naive), 0, "naive replay should have cascaded");
}

/// Each transaction of `txns` as a change of its own, as the replay takes them.
fn as_changes(txns: &[Txn]) -> Vec<cln_backup::Result<Change>> {
    txns.iter()
        .map(|(v, s)| {
            Ok(Change { seq: u64::from(*v), transactions: vec![Transaction { time_ms: 0, statements: s.clone() }] })
        })
        .collect()
}

#[test]
fn lone_pragma_outside_transaction_in_replayer() {
    // The replay itself, fed the rebuild log transaction by transaction.
    let dir = tempfile::tempdir().unwrap();
    let (txns, _) = rebuild_log(13);
    // Foreign keys as each lone pragma left them, replaying up to it.
    let pragmas: Vec<usize> = (0..txns.len()).filter(|&i| workload::is_lone_pragma(&txns[i].1)).collect();
    assert_eq!(pragmas.len(), 2, "the rebuild is bracketed by two lone pragmas");
    for i in pragmas {
        let path = dir.path().join(format!("upto-{i}.sqlite3"));
        let (v, s) = &txns[i];
        let replayed = replay::replay_changes(
            &path,
            cln_backup::Model::Lightningd,
            true,
            as_changes(&txns[..=i]),
            u64::from(*v),
            None,
        )
        .unwrap();
        assert_eq!(replayed.foreign_keys, s[0].contains("ON"));
    }
    let path = dir.path().join("replayed.sqlite3");
    let head = u64::from(txns.last().unwrap().0);
    let replayed =
        replay::replay_changes(&path, cln_backup::Model::Lightningd, true, as_changes(&txns), head, None).unwrap();
    assert!(replayed.foreign_keys);
    let want = reference(dir.path(), "reference.sqlite3", &txns);
    workload::assert_same_db(&path, &want);
    assert!(htlc_total(&path) > 20);
}

/// A trigger that makes the test database's `data_version` wrap like the u32
/// lightningd keeps (SQLite's integer would go on to 2^32).
const WRAP_TRIGGER: &str = "CREATE TRIGGER data_version_wraps AFTER UPDATE OF intval ON vars \
    WHEN NEW.name = 'data_version' AND NEW.intval > 4294967295 \
    BEGIN UPDATE vars SET intval = NEW.intval - 4294967296 WHERE name = 'data_version'; END";

#[test]
fn u32_wrap_restores_in_order_and_to_version_across_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Workload::starting_at(14, u32::MAX - 2);
    let schema = w.schema();
    assert_eq!(schema.0, u32::MAX - 1);
    // The snapshot: the node's database at 4294967294.
    let image = dir.path().join("image.sqlite3");
    {
        let conn = workload::open_like_lightningd(&image).unwrap();
        workload::apply(&conn, std::slice::from_ref(&schema)).unwrap();
        conn.execute_batch(WRAP_TRIGGER).unwrap();
    }
    let mut txns = Vec::new();
    for _ in 0..6 {
        txns.push(w.next_txn());
    }
    let versions: Vec<u32> = txns.iter().map(|t| t.0).collect();
    assert_eq!(versions, [u32::MAX, 0, 1, 2, 3, 4]);

    let store = new_store(dir.path());
    let mut f = std::fs::File::open(&image).unwrap();
    let info = store.add_snapshot(u32::MAX - 1, &mut f).unwrap();
    assert_eq!(info.version, u32::MAX - 1);
    add_all(&store, &txns);
    let st = store.status().unwrap();
    assert_eq!(st.version, 4);
    assert_eq!(st.seq, (1u64 << 32) | 4);
    assert_eq!(st.prev_version, Some(3));
    assert_eq!(st.restorable, (u64::from(u32::MAX - 1), (1u64 << 32) | 4));

    // Reference at each point: the image, then the transactions up to it.
    let reference_at = |n: usize, name: &str| {
        let path = dir.path().join(name);
        std::fs::copy(&image, &path).unwrap();
        let conn = workload::open_like_lightningd(&path).unwrap();
        workload::apply(&conn, &txns[..n]).unwrap();
        path
    };
    let head = restore_to(&store, dir.path(), "head.sqlite3", None);
    workload::assert_same_db(&head, &reference_at(6, "ref-head.sqlite3"));

    // --to-version given as a data_version: the latest one at or below the head.
    for (to, n) in [(u32::MAX - 1, 0usize), (u32::MAX, 1), (0, 2), (1, 3), (3, 5)] {
        let got = restore_to(&store, dir.path(), &format!("to-{to}.sqlite3"), Some(to.into()));
        workload::assert_same_db(&got, &reference_at(n, &format!("ref-{to}.sqlite3")));
        let conn = rusqlite::Connection::open(&got).unwrap();
        let dv: i64 = conn.query_row("SELECT intval FROM vars WHERE name='data_version'", [], |r| r.get(0)).unwrap();
        assert_eq!(dv, i64::from(to));
    }
    // An extended store version names the same point.
    let ext = restore_to(&store, dir.path(), "ext.sqlite3", Some((1u64 << 32) | 1));
    workload::assert_same_db(&ext, &reference_at(3, "ref-ext.sqlite3"));

    // Versions the store never held (before the snapshot; not reached yet).
    for to in [u64::from(u32::MAX - 2), 5, 1000, (1u64 << 32) | 5] {
        let dest = dir.path().join(format!("never-{to}.sqlite3"));
        let opts = restore::Options { to_version: Some(to), ..Default::default() };
        let err = restore::restore_store(&store, &dest, &opts).unwrap_err();
        assert!(matches!(err, Error::NotRestorable { asked, .. } if asked == to), "{err}");
        assert!(!dest.exists());
    }

    // The gap check works across the wrap too.
    let err = store.add_change(6, &[workload::bump(6)]).unwrap_err();
    assert!(matches!(err, Error::Gap { head: 4, expected: 5, got: 6 }), "{err}");
}

#[test]
fn restore_to_earlier_versions_matches_reference_at_that_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Workload::new(15);
    let mut txns: Vec<Txn> = (0..40).map(|_| w.next_txn()).collect();
    txns.extend(w.rebuild_channels());
    txns.extend((0..20).map(|_| w.next_txn()));
    let store = new_store(dir.path());
    add_all(&store, &txns);
    let head = w.version();
    // Each version once, including the one holding the OFF pragma (41) and the
    // rebuild with its ON pragma (42).
    for v in [1, 2, 17, 40, 41, 42, 50, head - 1, head] {
        let got = restore_to(&store, dir.path(), &format!("v{v}.sqlite3"), Some(v.into()));
        let want = reference(dir.path(), &format!("ref{v}.sqlite3"), &upto(&txns, v));
        workload::assert_same_db(&got, &want);
    }
    // Neighbouring versions do differ, so the comparison above can fail.
    assert!(workload::difference(&dir.path().join("v17.sqlite3"), &dir.path().join("ref40.sqlite3")).is_some());
}

#[test]
fn compaction_keeps_restores_identical_and_last_change_rewindable() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Workload::new(16);
    let store = new_store(dir.path());
    let mut txns: Vec<Txn> = (0..60).map(|_| w.next_txn()).collect();
    add_all(&store, &txns);

    let stats = compact::compact(&store, &Default::default()).unwrap();
    assert!(stats.compacted);
    assert_eq!(stats.snapshot_version, Some(w.version() - 1));
    assert_eq!(stats.changes_after, 1);
    let st = store.status().unwrap();
    assert_eq!(st.changes, 1);
    assert_eq!(st.snapshot.as_ref().map(|s| s.version), Some(w.version() - 1));
    assert!(st.rewind_allowed);
    let restored = restore_to(&store, dir.path(), "after-compact.sqlite3", None);
    workload::assert_same_db(&restored, &reference(dir.path(), "ref60.sqlite3", &txns));

    // The last change is still rewindable, and a rewind really removes it.
    let rewound = txns.pop().unwrap();
    assert_eq!(store.rewind().unwrap(), u64::from(w.version() - 1));
    let after_rewind = restore_to(&store, dir.path(), "after-rewind.sqlite3", None);
    workload::assert_same_db(&after_rewind, &reference(dir.path(), "ref59.sqlite3", &txns));
    // lightningd then commits it (or another transaction) at the same version.
    store.add_change(rewound.0, &rewound.1).unwrap();
    txns.push(rewound);

    // A compaction point between the OFF and ON pragmas: compact while the
    // head is the rebuild (its ON report not yet in).
    let rebuild = w.rebuild_channels();
    add_all(&store, &rebuild[..2]);
    txns.extend(rebuild[..2].iter().cloned());
    let stats = compact::compact(&store, &Default::default()).unwrap();
    assert_eq!(stats.snapshot_version, Some(rebuild[0].0));
    let st = store.status().unwrap();
    assert_eq!(st.snapshot.as_ref().map(|s| s.foreign_keys), Some(false));
    assert!(st.rewind_allowed);
    add_all(&store, &rebuild[2..]);
    txns.push(rebuild[2].clone());
    // More work, including a close that must cascade again (foreign keys back on).
    let victim = w.open_channels()[0];
    for _ in 0..10 {
        txns.push(w.next_txn());
        store.add_change(txns.last().unwrap().0, &txns.last().unwrap().1).unwrap();
    }
    if w.open_channels().contains(&victim) {
        txns.push(w.close(victim));
        store.add_change(txns.last().unwrap().0, &txns.last().unwrap().1).unwrap();
    }
    let restored = restore_to(&store, dir.path(), "after-fk-compact.sqlite3", None);
    workload::assert_same_db(&restored, &reference(dir.path(), "ref-fk.sqlite3", &txns));
    assert_eq!(count(&restored, "channel_htlcs", &format!("channel_id = {victim}")), 0);

    // Compacting again (foreign keys on at the point) changes nothing either,
    // and survives reopening.
    let stats = compact::compact(&store, &Default::default()).unwrap();
    assert!(stats.compacted);
    drop(store);
    let store = Store::open(dir.path().join("node.redb")).unwrap();
    let st = store.status().unwrap();
    assert_eq!(st.snapshot.as_ref().map(|s| s.foreign_keys), Some(true));
    assert!(st.rewind_allowed);
    let restored = restore_to(&store, dir.path(), "after-second.sqlite3", None);
    workload::assert_same_db(&restored, &reference(dir.path(), "ref-second.sqlite3", &txns));
}

#[test]
fn realistic_workload_restores_equal_to_reference() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Workload::new(17);
    let mut txns: Vec<Txn> = Vec::new();
    for i in 0..2500 {
        if i == 900 || i == 1800 {
            txns.extend(w.rebuild_channels());
        }
        txns.push(w.next_txn());
    }
    // The mix really contains what it claims.
    let has = |p: &str| txns.iter().any(|(_, s)| s.iter().any(|x| x.starts_with(p)));
    assert!(has("DELETE FROM channels WHERE id="));
    assert!(has("INSERT INTO invoices"));
    assert!(has("INSERT OR IGNORE INTO forwarded_payments"));
    assert!(w.closed_channels() > 5);

    let store = new_store(dir.path());
    add_all(&store, &txns);
    let restored = restore_to(&store, dir.path(), "restored.sqlite3", None);
    let want = reference(dir.path(), "reference.sqlite3", &txns);
    workload::assert_same_db(&restored, &want);
    // Non-trivial content: forwards whose HTLCs were closed became NULL.
    assert!(count(&restored, "forwarded_payments", "in_htlc_id IS NULL OR out_htlc_id IS NULL") > 0);
    assert!(count(&restored, "invoices", "label LIKE '%''%' OR label LIKE '%' || char(10) || '%'") > 0);
}
