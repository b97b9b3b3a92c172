//! Model-based property test of a store of an application's own database
//! ([`Model::Application`](cln_backup::Model::Application)), for both
//! declared foreign-key settings: random sequences of operations run
//! against the real store, and every step is checked against an in-memory
//! model of what the store must hold and answer.
//!
//! The operations: add a transaction (random statements on a parent/child
//! pair of tables, the child `REFERENCES parent(id) ON DELETE CASCADE`,
//! values rendered with `render::expand` and `render::literal`: REALs such
//! as 0.1+0.2, 1e-300, -0.0, the infinities and NaN, text with quotes, `--`,
//! NUL and `'reserved_til=5WHERE x'`, which lightningd's model would
//! rewrite, blobs, NULLs); delete a parent (its children stay or go as the
//! declared setting says); add with a stale version (`ConcurrentWrite`,
//! retryable, nothing changed); add skipping ahead (`Gap`, nothing
//! changed); rewind, and two rewinds in a row (the second refused, nothing
//! changed); reconcile with the version the application committed (Match),
//! after a change it reported but never committed with nothing, a reopen or
//! a compaction in between (Rewound), and with versions that disagree
//! (DatabaseBehind, BackupBehind, nothing changed), through the store and
//! through a `FileDestination`; reopen (the model is recorded in the file,
//! and a read-only open and a reopen derive the status the writes kept);
//! compaction keeping 1 to 3 snapshots (`store.model()` and format 3 after
//! it); a snapshot of the application's live database
//! (`lifecycle::snapshot_connection`); restore at a random restorable
//! version (and just below the range: refused); `lifecycle::verify_against`
//! of the head.
//!
//! Checked after every step: `version()`, `head()`, and from `status()`
//! the version, `prev_version`, `rewind_allowed`, `changes`,
//! `changes_since_snapshot`, the restorable range, the snapshots kept (and
//! that each replays with the declared foreign keys), the model and format
//! 3. Regularly, and after every compaction, snapshot and reopen: a restore
//! of the head compared with the model's database, and the stored log read
//! back statement by statement (stored exactly as given). A failure names
//! the foreign-key setting, the step and its operation, and what differed.
//!
//! Decisions:
//! - The model's database at version `v` is built from scratch for each
//!   comparison: a fresh SQLite file with the declared `PRAGMA
//!   foreign_keys`, and each committed transaction up to `v` in its own
//!   `BEGIN`/`COMMIT`, its values *bound* as parameters, as the application
//!   runs them. The store is given the same statements rendered as text, so
//!   the comparison also holds the rendering to "reads back as the same
//!   value".
//! - `changes` is modelled exactly: an application's records hold one
//!   transaction each (no repeated-version reports) and the snapshot at the
//!   floor holds the record at its version, so the store keeps the records
//!   after the oldest snapshot: head minus the oldest snapshot's version (or
//!   minus 0 without one).
//! - A rewind, and a reconcile that rewinds, take the model's last committed
//!   transaction back: the application had not committed it after all.
//! - The transactions are generated from the model's rows (a child's parent
//!   exists when it is inserted; ids are never reused), so each one runs
//!   without error in the application's database and at replay, whatever
//!   the declared setting.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use cln_backup::compare::{compare_databases, Labels};
use cln_backup::lifecycle::{self, Reconciled};
use cln_backup::render::{expand, literal, Value};
use cln_backup::rusqlite::{self, Connection};
use cln_backup::{compact, restore, Error, FileDestination, Model as ChangeModel, Store};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
enum Op {
    /// A new transaction, generated from the seed.
    Add(u64),
    /// A transaction deleting a parent (the one with most children).
    DeleteParent(u64),
    /// A version at or below the head: `head - n % (head + 1)`.
    Stale(u32),
    /// A version ahead of the next: `head + 2 + n`.
    Skip(u32),
    Rewind,
    DoubleRewind,
    /// Reconcile with the version the application committed.
    Reconcile,
    /// A change reported but never committed by the application, then
    /// `then`, then a reconcile with the version the application committed:
    /// the change is rewound. Through the store or a `FileDestination`.
    Uncommitted {
        seed: u64,
        then: Then,
        destination: bool,
    },
    /// Reconcile with a version that is not the application's (picked by
    /// the number): nothing changes unless the model says it rewinds.
    ReconcileOther(u8),
    Reopen,
    /// Compaction keeping this many snapshots.
    Compact(usize),
    /// A snapshot of the application's database at the head.
    Snapshot,
    /// Restore a version of the restorable range (picked by the number).
    RestoreAt(u16),
    Verify,
}

/// What happens between a change the application never committed and the
/// reconcile as it starts again.
#[derive(Clone, Debug)]
enum Then {
    Nothing,
    /// The application stopped: the store is closed and opened again.
    Reopen,
    /// A compaction (keeping this many snapshots) ran meanwhile: its
    /// snapshot is at the version the application committed.
    Compact(usize),
}

fn then() -> impl Strategy<Value = Then> {
    prop_oneof![Just(Then::Nothing), Just(Then::Reopen), (1usize..=3).prop_map(Then::Compact)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => any::<u64>().prop_map(Op::Add),
        2 => any::<u64>().prop_map(Op::DeleteParent),
        1 => any::<u32>().prop_map(Op::Stale),
        1 => prop_oneof![0u32..4, Just(1000), Just((1 << 31) - 3)].prop_map(Op::Skip),
        2 => Just(Op::Rewind),
        1 => Just(Op::DoubleRewind),
        1 => Just(Op::Reconcile),
        2 => (any::<u64>(), then(), any::<bool>())
            .prop_map(|(seed, then, destination)| Op::Uncommitted { seed, then, destination }),
        1 => any::<u8>().prop_map(Op::ReconcileOther),
        1 => Just(Op::Reopen),
        3 => (1usize..=3).prop_map(Op::Compact),
        1 => Just(Op::Snapshot),
        2 => any::<u16>().prop_map(Op::RestoreAt),
        1 => Just(Op::Verify),
    ]
}

/// SplitMix64: the statements of a transaction from its seed.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// REALs that a 15-digit rendering, a lost sign or a lost exponent would change.
const REALS: &[f64] = &[
    0.1 + 0.2,
    1e-300,
    -0.0,
    0.0,
    5e-324,
    f64::MAX,
    -f64::MIN_POSITIVE,
    1.0 / 3.0,
    -2.5,
    1e16,
    123_456_789.125,
    f64::INFINITY,
    f64::NEG_INFINITY,
    f64::NAN,
];

/// A text lightningd's model would rewrite at replay (a space before
/// `WHERE`, CLN's pre-4090 repair); an application's must stay as it is.
const LIGHTNINGD_WOULD_REWRITE: &str = "reserved_til=5WHERE x";

const TEXTS: &[&str] = &[
    "",
    "plain",
    "it's",
    "'; DROP TABLE parent; --",
    "-- not a comment",
    "/* nor this */",
    LIGHTNINGD_WOULD_REWRITE,
    "peer_id=5WHERE channels.id=3",
    "ünïcödé 𝄞",
    "line\nbreak\ttab",
    "nul\0inside",
    "? and ?2 and :name",
];

fn real(rng: &mut Rng) -> Value {
    Value::Real(*rng.pick(REALS))
}

fn text(rng: &mut Rng) -> Value {
    Value::from(*rng.pick(TEXTS))
}

fn blob(rng: &mut Rng) -> Value {
    let n = rng.below(6);
    Value::Blob((0..n).map(|_| rng.next_u64() as u8).collect())
}

/// Any value, of any storage class.
fn any_value(rng: &mut Rng) -> Value {
    match rng.below(7) {
        0 => Value::Null,
        1 => Value::Integer(*rng.pick(&[i64::MIN, i64::MAX, 0, -1, 42])),
        2 | 3 => real(rng),
        4 | 5 => text(rng),
        _ => blob(rng),
    }
}

/// One statement: SQL with `?` placeholders and the values the application
/// binds to them.
#[derive(Clone, Debug)]
struct Stmt {
    sql: String,
    params: Vec<Value>,
}

/// One transaction of the application.
#[derive(Clone, Debug)]
struct Txn {
    version: u32,
    stmts: Vec<Stmt>,
    /// The statements as reported to the store (values rendered).
    reported: Vec<String>,
    schema: bool,
    parents_added: Vec<i64>,
    parents_deleted: Vec<i64>,
    /// The parent of each child inserted.
    children: Vec<Option<i64>>,
}

impl Txn {
    fn new(version: u32) -> Txn {
        Txn {
            version,
            stmts: vec![],
            reported: vec![],
            schema: false,
            parents_added: vec![],
            parents_deleted: vec![],
            children: vec![],
        }
    }

    /// A statement with placeholders, reported through `render::expand`.
    fn bound(&mut self, sql: &str, params: Vec<Value>) {
        let text = expand(sql, &params).unwrap_or_else(|e| panic!("expand {sql}: {e}"));
        self.reported.push(text);
        self.stmts.push(Stmt { sql: sql.to_string(), params });
    }

    /// A statement written as text (literals in it), reported as it is.
    fn raw(&mut self, sql: String) {
        self.reported.push(sql.clone());
        self.stmts.push(Stmt { sql, params: vec![] });
    }

    fn insert_parent(&mut self, id: i64, rng: &mut Rng) {
        let data = if rng.chance(25) { Value::Null } else { blob(rng) };
        self.bound(
            "INSERT INTO parent (id, name, score, data) VALUES (?, ?, ?, ?)",
            vec![Value::from(id), text(rng), real(rng), data],
        );
        self.parents_added.push(id);
    }

    fn insert_child(&mut self, id: i64, pid: Option<i64>, rng: &mut Rng) {
        self.bound(
            "INSERT INTO child (id, pid, note, amount, extra) VALUES (?1, ?2, ?3, ?4, ?5)",
            vec![Value::from(id), Value::from(pid), text(rng), real(rng), any_value(rng)],
        );
        self.children.push(pid);
    }

    fn delete_parent(&mut self, id: i64) {
        self.bound("DELETE FROM parent WHERE id = ?", vec![Value::from(id)]);
        self.parents_deleted.push(id);
    }
}

fn fk_pragma(on: bool) -> &'static str {
    if on {
        "PRAGMA foreign_keys = ON"
    } else {
        "PRAGMA foreign_keys = OFF"
    }
}

fn to_sqlite(v: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match v {
        Value::Null => V::Null,
        Value::Integer(i) => V::Integer(*i),
        Value::Real(r) => V::Real(*r),
        Value::Text(t) => V::Text(t.clone()),
        Value::Blob(b) => V::Blob(b.clone()),
    }
}

/// What the store must hold, and the application's committed transactions.
#[derive(Debug)]
struct Model {
    foreign_keys: bool,
    /// Every transaction the application committed, in order: version
    /// `i + 1` at index `i`.
    committed: Vec<Txn>,
    head: u32,
    /// The snapshots' versions, oldest first.
    snapshots: Vec<u32>,
    /// The head was reached by a rewind: a second one is refused.
    rewound_here: bool,
    next_parent: i64,
    next_child: i64,
}

impl Model {
    fn new(foreign_keys: bool) -> Model {
        Model {
            foreign_keys,
            committed: vec![],
            head: 0,
            snapshots: vec![],
            rewound_here: false,
            next_parent: 1,
            next_child: 1,
        }
    }

    fn declared(&self) -> ChangeModel {
        ChangeModel::Application { foreign_keys: self.foreign_keys }
    }

    /// The oldest snapshot's version, or 0: restores reach down to it.
    fn base(&self) -> u32 {
        self.snapshots.first().copied().unwrap_or(0)
    }

    /// The newest snapshot's version, or 0: a rewind may not go below it.
    fn newest(&self) -> u32 {
        self.snapshots.last().copied().unwrap_or(0)
    }

    /// Records held: one for each version after the oldest snapshot.
    fn changes(&self) -> u64 {
        u64::from(self.head - self.base())
    }

    fn prev_version(&self) -> Option<u32> {
        (self.head > self.base()).then(|| self.head - 1)
    }

    /// Once after a change that follows the newest snapshot.
    fn rewind_allowed(&self) -> bool {
        self.head > self.newest() && !self.rewound_here
    }

    /// What reconciling with `committed` finds (SPEC section 2).
    fn reconciled(&self, committed: u32) -> Reconciled {
        let head = self.head;
        if committed == head {
            Reconciled::Match { version: head }
        } else if committed.checked_add(1) == Some(head) && self.rewind_allowed() {
            Reconciled::Rewound { removed: head, version: committed }
        } else if committed > head || (committed + 1 == head && head > self.base()) {
            // Changes the backup never got, or one it holds that the
            // application did not commit and that may not be rewound.
            Reconciled::BackupBehind { committed, backup: head }
        } else {
            Reconciled::DatabaseBehind { committed, backup: head }
        }
    }

    fn has_schema(&self) -> bool {
        self.committed.iter().any(|t| t.schema)
    }

    fn txn(&self, version: u32) -> &Txn {
        &self.committed[version as usize - 1]
    }

    /// The parents in the application's database, each with the number of
    /// children ever inserted under it.
    fn parents(&self) -> Vec<(i64, usize)> {
        let mut live: Vec<(i64, usize)> = vec![];
        for t in &self.committed {
            live.extend(t.parents_added.iter().map(|&p| (p, 0)));
            for pid in t.children.iter().flatten() {
                if let Some(p) = live.iter_mut().find(|(id, _)| id == pid) {
                    p.1 += 1;
                }
            }
            live.retain(|(id, _)| !t.parents_deleted.contains(id));
        }
        live
    }

    fn schema_txn(version: u32) -> Txn {
        let mut t = Txn::new(version);
        t.schema = true;
        t.raw("CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB)".into());
        t.raw(
            "CREATE TABLE child (id INTEGER PRIMARY KEY, pid INTEGER REFERENCES parent(id) ON DELETE CASCADE, \
             note TEXT, amount REAL, extra)"
                .into(),
        );
        t.raw("CREATE INDEX child_pid ON child (pid)".into());
        t
    }

    /// The transaction at head + 1, generated from `seed`.
    fn next_txn(&mut self, seed: u64) -> Txn {
        let version = self.head + 1;
        if !self.has_schema() {
            return Model::schema_txn(version);
        }
        let mut rng = Rng(seed);
        let mut t = Txn::new(version);
        let mut parents: Vec<i64> = self.parents().into_iter().map(|(id, _)| id).collect();
        for _ in 0..1 + rng.below(4) {
            match rng.below(11) {
                0 | 1 => {
                    let id = self.next_parent;
                    self.next_parent += 1;
                    t.insert_parent(id, &mut rng);
                    parents.push(id);
                }
                2..=4 => {
                    let id = self.next_child;
                    self.next_child += 1;
                    let pid = if parents.is_empty() || rng.chance(15) { None } else { Some(*rng.pick(&parents)) };
                    t.insert_child(id, pid, &mut rng);
                }
                5 => {
                    let id = 1 + rng.below(self.next_child as usize) as i64;
                    t.bound(
                        "UPDATE child SET amount = amount * ?, note = ? WHERE id = ?",
                        vec![real(&mut rng), text(&mut rng), Value::from(id)],
                    );
                }
                6 => {
                    let id = 1 + rng.below(self.next_parent as usize) as i64;
                    let score = literal(&real(&mut rng));
                    let data = literal(&blob(&mut rng));
                    t.raw(format!("UPDATE parent SET score = {score}, data = {data} WHERE id = {id}"));
                }
                7 => {
                    let id = self.next_child;
                    self.next_child += 1;
                    t.raw(format!(
                        "INSERT INTO child (id, pid, note, extra) VALUES ({id}, NULL, '{LIGHTNINGD_WOULD_REWRITE}', {})",
                        literal(&any_value(&mut rng))
                    ));
                    t.children.push(None);
                }
                8 => {
                    // A unary minus before a placeholder (a zero must stay +0.0).
                    let id = 1 + rng.below(self.next_parent as usize) as i64;
                    let v = if rng.chance(50) { Value::Real(0.0) } else { real(&mut rng) };
                    t.bound("UPDATE parent SET score = -? WHERE id = ?", vec![v, Value::from(id)]);
                }
                9 => {
                    let id = 1 + rng.below(self.next_child as usize) as i64;
                    t.bound("DELETE FROM child WHERE id = ?", vec![Value::from(id)]);
                }
                _ => {
                    let id = self.next_parent;
                    self.next_parent += 1;
                    t.bound(
                        "INSERT INTO parent /* ? is no parameter here */ (id, name) VALUES (?, ?)",
                        vec![Value::from(id), text(&mut rng)],
                    );
                    t.parents_added.push(id);
                    parents.push(id);
                }
            }
        }
        t
    }

    /// A transaction deleting the parent with most children (ties: by the
    /// seed); with no parent, one is inserted with a child and deleted.
    fn delete_txn(&mut self, seed: u64) -> Txn {
        if !self.has_schema() {
            return Model::schema_txn(self.head + 1);
        }
        let mut rng = Rng(seed);
        let mut t = Txn::new(self.head + 1);
        let parents = self.parents();
        let most = parents.iter().map(|p| p.1).max();
        let candidates: Vec<i64> = parents.iter().filter(|p| Some(p.1) == most).map(|p| p.0).collect();
        if candidates.is_empty() {
            let (id, child) = (self.next_parent, self.next_child);
            self.next_parent += 1;
            self.next_child += 1;
            t.insert_parent(id, &mut rng);
            t.insert_child(child, Some(id), &mut rng);
            t.delete_parent(id);
        } else {
            t.delete_parent(*rng.pick(&candidates));
        }
        t
    }

    /// Build the application's database at `version` in a new file: the
    /// committed transactions up to it, values bound, foreign keys as
    /// declared.
    fn database_at(&self, path: &Path, version: u32) {
        let conn = Connection::open(path).unwrap();
        // Nothing here needs to survive a crash: no syncs.
        conn.execute_batch("PRAGMA synchronous = OFF; PRAGMA journal_mode = MEMORY").unwrap();
        conn.execute_batch(fk_pragma(self.foreign_keys)).unwrap();
        for t in self.committed.iter().take_while(|t| t.version <= version) {
            conn.execute_batch("BEGIN").unwrap();
            for s in &t.stmts {
                let params = s.params.iter().map(to_sqlite);
                conn.execute(&s.sql, rusqlite::params_from_iter(params))
                    .unwrap_or_else(|e| panic!("the model's database, version {}: {}: {e}", t.version, s.sql));
            }
            conn.execute_batch("COMMIT").unwrap();
        }
    }
}

/// What the operations did, for the fixed sequence to check that each did
/// its work at least once.
#[derive(Debug, Default)]
struct Tally {
    rewound: u32,
    rewind_refused: u32,
    reconcile_rewound: u32,
    reconcile_behind: u32,
    compacted: u32,
    snapshots_dropped: u64,
    restored_at: u32,
    parents_deleted_with_children: u32,
}

struct Harness {
    dir: tempfile::TempDir,
    path: PathBuf,
    store: Option<Store>,
    model: Model,
    files: u64,
    tally: Tally,
}

/// A store's status without the file's size, which closing it may change.
fn status_without_size(store: &Store) -> serde_json::Value {
    let mut v = serde_json::to_value(store.status().unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("file_bytes");
    v
}

impl Harness {
    fn new(foreign_keys: bool) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.redb");
        let model = Model::new(foreign_keys);
        let store = Store::create_with(&path, model.declared()).unwrap();
        Harness { dir, path, store: Some(store), model, files: 0, tally: Tally::default() }
    }

    fn store(&self) -> &Store {
        self.store.as_ref().expect("the store is open")
    }

    fn file(&mut self, what: &str) -> PathBuf {
        self.files += 1;
        self.dir.path().join(format!("{what}-{}.sqlite3", self.files))
    }

    /// The model's database at `version`, in a new file.
    fn expected(&mut self, version: u32) -> PathBuf {
        let path = self.file("expected");
        self.model.database_at(&path, version);
        path
    }

    fn reopen(&mut self, step: &str) {
        let store = self.store.take().expect("the store is open");
        let held = status_without_size(&store);
        drop(store);
        // A read-only open derives the same status, and changes nothing.
        let bytes = std::fs::read(&self.path).unwrap();
        let reader = Store::open_read_only(&self.path).unwrap_or_else(|e| panic!("{step}: read-only open: {e}"));
        assert_eq!(status_without_size(&reader), held, "{step}: read-only open");
        drop(reader);
        assert!(std::fs::read(&self.path).unwrap() == bytes, "{step}: a read-only open changed the file");
        let store = Store::open(&self.path).unwrap_or_else(|e| panic!("{step}: reopen: {e}"));
        assert_eq!(store.model(), self.model.declared(), "{step}: the model after a reopen");
        assert_eq!(status_without_size(&store), held, "{step}: status after a reopen");
        self.store = Some(store);
    }

    fn check_status(&self, step: &str) {
        let m = &self.model;
        let store = self.store();
        let st = store.status().unwrap();
        assert_eq!(store.version(), m.head, "{step}: version()");
        assert_eq!(store.head(), u64::from(m.head), "{step}: head()");
        assert_eq!(st.version, m.head, "{step}: status version");
        assert_eq!(st.seq, u64::from(m.head), "{step}: status seq");
        assert_eq!(st.prev_version, m.prev_version(), "{step}: prev_version");
        assert_eq!(st.rewind_allowed, m.rewind_allowed(), "{step}: rewind_allowed");
        assert_eq!(st.changes, m.changes(), "{step}: changes");
        assert_eq!(st.changes_since_snapshot, u64::from(m.head - m.newest()), "{step}: changes_since_snapshot");
        assert_eq!(st.restorable, (u64::from(m.base()), u64::from(m.head)), "{step}: restorable");
        let snaps: Vec<u32> = st.snapshots.iter().map(|s| s.version).collect();
        assert_eq!(snaps, m.snapshots, "{step}: snapshots");
        assert_eq!(st.snapshot.as_ref().map(|s| s.version), m.snapshots.last().copied(), "{step}: snapshot");
        for s in &st.snapshots {
            assert_eq!(s.foreign_keys, m.foreign_keys, "{step}: foreign keys of the snapshot at {}", s.version);
        }
        assert_eq!(st.model, m.declared(), "{step}: model");
        assert_eq!(store.model(), m.declared(), "{step}: model()");
        assert_eq!(st.format, 3, "{step}: format");
    }

    /// Restore `version` and compare with the model's database there.
    fn check_restore_at(&mut self, version: u32, step: &str) {
        let got = self.file("restored");
        let opts = restore::Options { to_version: Some(u64::from(version)), ..Default::default() };
        let report = restore::restore_store(self.store(), &got, &opts)
            .unwrap_or_else(|e| panic!("{step}: restore to version {version}: {e}"));
        assert_eq!((report.version, report.seq), (version, u64::from(version)), "{step}: restored version");
        let want = self.expected(version);
        if let Some(d) = compare_databases(&got, &want, Labels::RESTORED_AND_EXPECTED).unwrap() {
            panic!("{step}: restore to version {version} differs from the model's database: {d}");
        }
        std::fs::remove_file(&got).unwrap();
        std::fs::remove_file(&want).unwrap();
    }

    /// The stored log, read back: one record for each version after the
    /// oldest snapshot, each the application's statements exactly.
    fn check_log(&self, step: &str) {
        let m = &self.model;
        let reader = self.store().reader().unwrap();
        let mut next = m.base() + 1;
        for change in reader.log().unwrap() {
            let change = change.unwrap_or_else(|e| panic!("{step}: reading the log at {next}: {e}"));
            assert_eq!(change.seq, u64::from(next), "{step}: the log's records");
            assert_eq!(change.transactions.len(), 1, "{step}: transactions in the record at {next}");
            let stored = &change.transactions[0].statements;
            assert_eq!(stored, &m.txn(next).reported, "{step}: the statements stored at version {next}");
            next += 1;
        }
        assert_eq!(next - 1, m.head, "{step}: the log ends at the head");
    }

    fn add(&mut self, txn: Txn, step: &str) {
        let added = self
            .store()
            .add_change(txn.version, &txn.reported)
            .unwrap_or_else(|e| panic!("{step}: add_change({}): {e}", txn.version));
        assert_eq!(added, cln_backup::Added::New(u64::from(txn.version)), "{step}: added");
        let m = &mut self.model;
        let doomed = m.parents().into_iter().filter(|(id, n)| *n > 0 && txn.parents_deleted.contains(id)).count();
        self.tally.parents_deleted_with_children += doomed as u32;
        m.head += 1;
        m.rewound_here = false;
        m.committed.push(txn);
    }

    /// A refused add: the error as `expected` says, and nothing changed.
    fn refused_add(&mut self, version: u32, step: &str, expected: impl Fn(&Error) -> bool, retryable: bool) {
        let before = status_without_size(self.store());
        let err = self.store().add_change(version, &["INSERT INTO parent (id) VALUES (-1)"]).unwrap_err();
        assert!(expected(&err), "{step}: add_change({version}) at {}: {err:?}", self.model.head);
        assert_eq!(err.is_retryable(), retryable, "{step}: is_retryable of {err}");
        assert_eq!(status_without_size(self.store()), before, "{step}: a refused add changed the store");
    }

    /// The model's side of a rewind: the application had not committed
    /// its last transaction.
    fn rewound(&mut self) {
        let m = &mut self.model;
        let gone = m.committed.pop().expect("a committed transaction to take back");
        assert_eq!(gone.version, m.head);
        m.head -= 1;
        m.rewound_here = true;
    }

    fn rewind(&mut self, step: &str) {
        let allowed = self.model.rewind_allowed();
        let before = status_without_size(self.store());
        match self.store().rewind() {
            Ok(seq) => {
                assert!(allowed, "{step}: rewind accepted but the model refuses it");
                self.rewound();
                assert_eq!(seq, u64::from(self.model.head), "{step}: the head after a rewind");
                self.tally.rewound += 1;
            }
            Err(Error::Rewind { reason }) => {
                assert!(!allowed, "{step}: rewind refused ({reason}) but the model allows it");
                assert_eq!(status_without_size(self.store()), before, "{step}: a refused rewind changed the store");
                self.tally.rewind_refused += 1;
            }
            Err(e) => panic!("{step}: rewind: {e}"),
        }
    }

    /// Reconcile with `committed` (through a `FileDestination` or the
    /// store), check the outcome against the model, and follow it.
    fn reconcile(&mut self, committed: u32, destination: bool, step: &str) -> Reconciled {
        let want = self.model.reconciled(committed);
        let before = status_without_size(self.store());
        let got = if destination {
            let dest = FileDestination::new(self.store.take().expect("the store is open"));
            let got = lifecycle::reconcile(&dest, committed);
            self.store = Some(dest.into_store());
            got
        } else {
            self.store().reconcile(committed)
        }
        .unwrap_or_else(|e| panic!("{step}: reconcile({committed}): {e}"));
        assert_eq!(got, want, "{step}: reconcile({committed}) at {}", self.model.head);
        assert_eq!(got.may_continue(), matches!(want, Reconciled::Match { .. } | Reconciled::Rewound { .. }));
        match got {
            Reconciled::Rewound { .. } => {
                self.rewound();
                self.tally.reconcile_rewound += 1;
            }
            Reconciled::Match { .. } => {
                assert_eq!(
                    status_without_size(self.store()),
                    before,
                    "{step}: a reconcile that matched changed the store"
                )
            }
            _ => {
                assert_eq!(status_without_size(self.store()), before, "{step}: a refused reconcile changed the store");
                self.tally.reconcile_behind += 1;
            }
        }
        got
    }

    fn run(&mut self, op: &Op, step: &str) {
        match op {
            Op::Add(seed) => {
                let txn = self.model.next_txn(*seed);
                self.add(txn, step);
            }
            Op::DeleteParent(seed) => {
                let txn = self.model.delete_txn(*seed);
                self.add(txn, step);
            }
            Op::Stale(n) => {
                let head = self.model.head;
                let version = head - n % (head + 1);
                let is = |e: &Error| matches!(e, Error::ConcurrentWrite { version: v, head: h } if *v == version && *h == head);
                self.refused_add(version, step, is, true);
            }
            Op::Skip(n) => {
                let head = self.model.head;
                let version = head.wrapping_add(2).wrapping_add(*n);
                let is = |e: &Error| matches!(e, Error::Gap { head: h, expected, got } if *h == head && *expected == head + 1 && *got == version);
                self.refused_add(version, step, is, false);
            }
            Op::Rewind => self.rewind(step),
            Op::DoubleRewind => {
                self.rewind(step);
                // Whatever the first did, a second in a row is refused.
                assert!(!self.model.rewind_allowed(), "{step}: the model allows a second rewind");
                self.rewind(step);
            }
            Op::Reconcile => {
                let head = self.model.head;
                self.reconcile(head, false, step);
            }
            Op::Uncommitted { seed, then, destination } => {
                // Reported, then the application stopped before its COMMIT.
                // Until the reconcile the model holds the change as the
                // store does; the reconcile takes it back.
                let head = self.model.head;
                let txn = self.model.next_txn(*seed);
                self.add(txn, step);
                match then {
                    Then::Nothing => {}
                    Then::Reopen => self.reopen(step),
                    Then::Compact(keep) => self.run(&Op::Compact(*keep), step),
                }
                self.check_status(step);
                let got = self.reconcile(head, *destination, step);
                assert_eq!(got, Reconciled::Rewound { removed: head + 1, version: head }, "{step}: reconcile");
            }
            Op::ReconcileOther(n) => {
                let head = self.model.head;
                let n = u32::from(*n);
                let committed = match n % 3 {
                    0 => head + 1 + n / 3,
                    1 if head >= 2 + n / 3 => head - 2 - n / 3,
                    2 if head >= 1 => head - 1,
                    _ => head + 1,
                };
                self.reconcile(committed, n % 2 == 1, step);
            }
            Op::Reopen => self.reopen(step),
            Op::Compact(keep) => {
                let m = &self.model;
                // A change to fold, and the last one, which stays rewindable.
                let expect = m.head >= 2 && m.head - 1 > m.newest();
                let changes_before = m.changes();
                let opts = compact::Options { retention: compact::Retention::new(*keep, None), ..Default::default() };
                let stats = compact::compact(self.store(), &opts).unwrap_or_else(|e| panic!("{step}: compact: {e}"));
                assert_eq!(stats.compacted, expect, "{step}: compacted");
                assert_eq!(stats.changes_before, changes_before, "{step}: changes_before");
                let m = &mut self.model;
                if expect {
                    m.snapshots.push(m.head - 1);
                    let dropped = m.snapshots.len().saturating_sub(*keep);
                    m.snapshots.drain(..dropped);
                    assert_eq!(stats.snapshots_dropped, dropped as u64, "{step}: snapshots_dropped");
                    assert_eq!(stats.snapshot_version, Some(m.head - 1), "{step}: snapshot_version");
                    self.tally.compacted += 1;
                    self.tally.snapshots_dropped += dropped as u64;
                } else {
                    assert_eq!(stats.snapshot_version, None, "{step}: snapshot_version");
                }
                assert_eq!(stats.snapshots_kept, m.snapshots, "{step}: snapshots_kept");
                assert_eq!(stats.changes_after, m.changes(), "{step}: changes_after");
                assert_eq!(self.store().model(), self.model.declared(), "{step}: the model after a compaction");
                assert_eq!(self.store().status().unwrap().format, 3, "{step}: the format after a compaction");
            }
            Op::Snapshot => {
                let head = self.model.head;
                let live = self.expected(head);
                let conn = Connection::open(&live).unwrap();
                let info = lifecycle::snapshot_connection(self.store(), &conn, head)
                    .unwrap_or_else(|e| panic!("{step}: snapshot_connection at {head}: {e}"));
                assert_eq!((info.version, info.foreign_keys), (head, self.model.foreign_keys), "{step}: snapshot");
                // It replaces every snapshot and record.
                self.model.snapshots = vec![head];
            }
            Op::RestoreAt(n) => {
                let m = &self.model;
                let lo = m.base();
                let version = lo + u32::from(*n) % (m.head - lo + 1);
                self.check_restore_at(version, step);
                self.tally.restored_at += 1;
                // Just below the range: refused.
                if lo > 0 {
                    let below = self.file("below");
                    let opts = restore::Options { to_version: Some(u64::from(lo - 1)), ..Default::default() };
                    let err = restore::restore_store(self.store(), &below, &opts);
                    assert!(
                        matches!(err, Err(Error::NotRestorable { asked, .. }) if asked == u64::from(lo - 1)),
                        "{step}: restore to {}: {err:?}",
                        lo - 1
                    );
                    assert!(!below.exists(), "{step}: a refused restore left a file");
                }
            }
            Op::Verify => {
                let head = self.model.head;
                let want = self.expected(head);
                let reader = self.store().reader().unwrap();
                let found = lifecycle::verify_against(&reader, Some(&want), None)
                    .unwrap_or_else(|e| panic!("{step}: verify_against: {e}"));
                if let Some(d) = found.difference {
                    panic!("{step}: verify_against the model's database: {d}");
                }
                assert_eq!(found.version, head, "{step}: verified version");
                assert_eq!(found.changes, u64::from(head - self.model.newest()), "{step}: verified changes");
                std::fs::remove_file(&want).unwrap();
                self.check_log(step);
            }
        }
    }

    /// With foreign keys on, no child outlives its parent in the model's
    /// database (and so in the restores compared with it).
    fn check_orphans(&mut self, step: &str) {
        let db = self.expected(self.model.head);
        if self.model.has_schema() && self.model.foreign_keys {
            let conn = Connection::open(&db).unwrap();
            let orphans: i64 = conn
                .query_row(
                    "SELECT count(*) FROM child WHERE pid IS NOT NULL AND pid NOT IN (SELECT id FROM parent)",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(orphans, 0, "{step}: orphaned children with foreign keys on");
        }
        std::fs::remove_file(&db).unwrap();
    }
}

fn run_sequence(foreign_keys: bool, ops: &[Op]) -> Harness {
    let mut h = Harness::new(foreign_keys);
    let fk = if foreign_keys { "on" } else { "off" };
    for (i, op) in ops.iter().enumerate() {
        let step = format!("foreign keys {fk}, step {i} ({op:?})");
        h.run(op, &step);
        h.check_status(&step);
        if i % 4 == 3 || matches!(op, Op::Compact(_) | Op::Snapshot | Op::Reopen) {
            h.check_restore_at(h.model.head, &step);
            h.check_log(&step);
        }
    }
    let step = format!("foreign keys {fk}, end");
    h.check_restore_at(h.model.head, &step);
    h.check_log(&step);
    h.check_orphans(&step);
    h
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn store_agrees_with_model(foreign_keys in any::<bool>(), ops in proptest::collection::vec(op(), 1..40)) {
        run_sequence(foreign_keys, &ops);
    }
}

#[test]
fn fixed_sequence_covers_every_operation() {
    use Op::*;
    let ops = [
        Stale(0),
        Snapshot,
        Add(1),
        Add(2),
        Add(3),
        DeleteParent(0),
        Add(4),
        Add(5),
        Rewind,
        Reconcile,
        Add(6),
        DoubleRewind,
        ReconcileOther(2),
        Add(7),
        Add(8),
        Compact(3),
        Stale(1),
        Skip(0),
        Skip(1000),
        Skip((1 << 31) - 3),
        Uncommitted { seed: 9, then: Then::Nothing, destination: false },
        Add(10),
        Uncommitted { seed: 11, then: Then::Reopen, destination: true },
        Rewind,
        ReconcileOther(0),
        ReconcileOther(4),
        Add(12),
        ReconcileOther(5),
        Add(13),
        Add(14),
        Compact(2),
        Add(15),
        Compact(2),
        Add(16),
        Add(17),
        Compact(1),
        Reopen,
        DeleteParent(1),
        Add(18),
        RestoreAt(0),
        RestoreAt(7),
        Snapshot,
        Rewind,
        Add(19),
        Add(20),
        Compact(3),
        DeleteParent(2),
        Verify,
        Add(21),
        Compact(3),
        Uncommitted { seed: 22, then: Then::Compact(1), destination: false },
        RestoreAt(1),
        Verify,
    ];
    for foreign_keys in [true, false] {
        let mut h = run_sequence(foreign_keys, &ops);
        let t = &h.tally;
        assert!(t.rewound > 0 && t.rewind_refused > 0, "{t:?}");
        assert!(t.reconcile_rewound >= 3 && t.reconcile_behind >= 2, "{t:?}");
        assert!(t.compacted >= 4 && t.snapshots_dropped > 0 && t.restored_at >= 3, "{t:?}");
        // A parent with children was deleted: the declared setting decides
        // what the restore holds, and the other one gives another database.
        let other = h.file("other-setting");
        h.model.foreign_keys = !foreign_keys;
        h.model.database_at(&other, h.model.head);
        h.model.foreign_keys = foreign_keys;
        let reader = h.store().reader().unwrap();
        let found = lifecycle::verify_against(&reader, Some(&other), None).unwrap();
        assert!(found.difference.is_some(), "foreign keys {foreign_keys}: the setting made no difference");
        assert!(h.tally.parents_deleted_with_children > 0, "{:?}", h.tally);
    }
    // The text lightningd's model would rewrite is one it does rewrite.
    let stmt = format!("UPDATE t SET note = '{LIGHTNINGD_WOULD_REWRITE}'");
    assert_ne!(cln_backup::replay::fix_pre_4090(&stmt), stmt);
}
