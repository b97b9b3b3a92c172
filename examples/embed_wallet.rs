//! A tokio application keeping its own SQLite database backed up through
//! the library: the contract of EMBEDDING.md in working code.
//!
//! The "wallet" has a database of its own (`wallet.sqlite3`) and a store of
//! [`Model::Application`] beside it (`wallet.redb`). Four tasks make 1 000
//! transactions between them. Each transaction, under the one lock the
//! application holds around its database:
//!
//! 1. runs its statements on the database inside `BEGIN`, with its values
//!    rendered as exact literals ([`render::expand`]) and the application's
//!    own version counter bumped in its own table;
//! 2. reports them to the store ([`AsyncStore::add_change`]) *before*
//!    `COMMIT`: a change the store refuses is rolled back, never committed;
//! 3. commits; if the `COMMIT` fails (here, a deferred foreign key every
//!    hundredth transaction), it rewinds the change from the store
//!    ([`AsyncStore::rewind`]), so the backup never holds what the
//!    database does not.
//!
//! At start it reconciles the store with the version its database last
//! committed ([`AsyncStore::reconcile`]), taking a snapshot of the live
//! database when the store is new ([`lifecycle::snapshot_connection`]). At
//! the end it restores the store into a new file and compares it with the
//! database row by row (REAL values bit for bit), and prints the median
//! `add_change` time beside a bare `fdatasync` append on the same disk.
//!
//! ```sh
//! cargo run --release --example embed_wallet             # in a temporary directory
//! cargo run --release --example embed_wallet -- DIR      # in DIR, kept; run it again to go on
//! ```

use cln_backup::compare::{compare_databases, Labels};
use cln_backup::lifecycle::{self, Reconciled};
use cln_backup::render::{expand, Value};
use cln_backup::rusqlite::{Connection, OptionalExtension};
use cln_backup::{AsyncStore, Model, Store};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

const TRANSACTIONS: u32 = 1_000;
const TASKS: u32 = 4;

type AnyResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The application's database and what it knows of its version, behind the
/// one lock every writer takes.
struct Wallet {
    conn: Connection,
    /// The version the database last committed (kept in `app_meta`).
    version: u32,
}

const SCHEMA: &str = "CREATE TABLE app_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO app_meta VALUES ('version', 0);
CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE payments (
    id INTEGER PRIMARY KEY,
    account INTEGER NOT NULL REFERENCES accounts(id) DEFERRABLE INITIALLY DEFERRED,
    amount_btc REAL NOT NULL,
    fee_rate REAL NOT NULL,
    memo TEXT,
    preimage BLOB
);
INSERT INTO accounts VALUES (1, 'spending'), (2, 'savings');";

fn open_wallet(path: &Path) -> AnyResult<Wallet> {
    let conn = Connection::open(path)?;
    conn.execute_batch("PRAGMA foreign_keys = ON")?;
    let has_meta: bool =
        conn.query_row("SELECT count(*) > 0 FROM sqlite_master WHERE name = 'app_meta'", [], |r| r.get(0))?;
    if !has_meta {
        // A wallet that existed before it was backed up: its first state
        // goes into the store as a snapshot.
        conn.execute_batch(SCHEMA)?;
    }
    let version: Option<u32> =
        conn.query_row("SELECT value FROM app_meta WHERE name = 'version'", [], |r| r.get(0)).optional()?;
    Ok(Wallet { conn, version: version.unwrap_or(0) })
}

/// The statements of payment `n`: exact literals, deterministic, with the
/// application's version bumped in the same transaction.
fn payment(n: u32, version: u32) -> AnyResult<Vec<String>> {
    // Every hundredth names an account that does not exist: the deferred
    // foreign key fails at COMMIT, after the change was reported.
    let account = if n % 100 == 99 { 9 } else { 1 + n % 2 };
    let amount = f64::from(n) * 0.000_1 + 0.1 + 0.2; // no 15-digit value survives this
    let fee = 1.0 / f64::from(n + 3);
    let memo = n.is_multiple_of(7).then(|| format!("it's payment {n}: \"quoted\", -- not a comment ?"));
    let preimage: Option<Vec<u8>> = n.is_multiple_of(5).then(|| n.to_le_bytes().repeat(8));
    Ok(vec![
        expand(
            "INSERT INTO payments (account, amount_btc, fee_rate, memo, preimage) VALUES (?, ?, ?, ?, ?)",
            &[Value::from(account), Value::from(amount), Value::from(fee), Value::from(memo), Value::from(preimage)],
        )?,
        expand("UPDATE app_meta SET value = ? WHERE name = 'version'", &[Value::from(version)])?,
    ])
}

/// One transaction under the contract; returns how long the report took,
/// and whether the transaction was committed.
async fn transact(wallet: &Mutex<Wallet>, store: &AsyncStore, n: u32) -> AnyResult<(Duration, bool)> {
    let mut w = wallet.lock().await;
    let version = w.version + 1;
    let statements = payment(n, version)?;
    w.conn.execute_batch("BEGIN")?;
    for s in &statements {
        if let Err(e) = w.conn.execute_batch(s) {
            w.conn.execute_batch("ROLLBACK")?;
            return Err(e.into());
        }
    }
    // Reported before COMMIT: durable when it returns.
    let started = Instant::now();
    let reported = store.add_change(version, statements).await;
    let took = started.elapsed();
    if let Err(e) = reported {
        w.conn.execute_batch("ROLLBACK")?;
        return Err(e.into());
    }
    match w.conn.execute_batch("COMMIT") {
        Ok(()) => {
            w.version = version;
            Ok((took, true))
        }
        Err(_) => {
            // Not committed: take the change back out of the backup, then
            // end the failed transaction.
            w.conn.execute_batch("ROLLBACK")?;
            store.rewind().await?;
            Ok((took, false))
        }
    }
}

/// Median of a bare `fdatasync` append of `bytes` bytes in `dir`, over `n`.
fn bare_fdatasync_append(dir: &Path, n: usize, bytes: usize) -> AnyResult<Duration> {
    use std::io::Write;
    let path = dir.join("fdatasync-probe");
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
    let record = vec![0x5au8; bytes];
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f.write_all(&record)?;
        f.sync_data()?;
        times.push(t.elapsed());
    }
    std::fs::remove_file(&path)?;
    Ok(median(&mut times))
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> AnyResult<()> {
    let (_tmp, dir) = match std::env::args_os().nth(1) {
        Some(d) => {
            std::fs::create_dir_all(&d)?;
            (None, PathBuf::from(d))
        }
        None => {
            let t = tempfile::tempdir()?;
            let d = t.path().to_path_buf();
            (Some(t), d)
        }
    };
    let db = dir.join("wallet.sqlite3");
    let store_path = dir.join("wallet.redb");
    let wallet = open_wallet(&db)?;

    // Start: a new store takes a snapshot of the database as it is; an
    // existing one is reconciled with the version the database committed.
    let store = if store_path.exists() {
        let store = AsyncStore::open(store_path.clone()).await?;
        match store.reconcile(wallet.version).await? {
            Reconciled::Match { version } => println!("backup at version {version}, as the wallet"),
            Reconciled::Rewound { removed, version } => {
                println!("backup rewound from {removed} to {version}: that change was never committed")
            }
            other => return Err(format!("the backup cannot go on with this database: {other:?}").into()),
        }
        store
    } else {
        let store = Store::create_with(&store_path, Model::Application { foreign_keys: true })?;
        lifecycle::snapshot_connection(&store, &wallet.conn, wallet.version)?;
        AsyncStore::new(store)
    };
    let start = wallet.version;
    let wallet = Arc::new(Mutex::new(wallet));

    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (wallet, store) = (wallet.clone(), store.clone());
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            let mut rolled_back = 0u32;
            for i in 0..TRANSACTIONS / TASKS {
                let n = start + i * TASKS + task;
                let (took, committed) = transact(&wallet, &store, n).await?;
                times.push(took);
                rolled_back += u32::from(!committed);
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((times, rolled_back))
        }));
    }
    let mut times = Vec::new();
    let mut rolled_back = 0;
    for t in tasks {
        let (mut t, r) = t.await??;
        times.append(&mut t);
        rolled_back += r;
    }
    let version = wallet.lock().await.version;
    println!(
        "{} transactions by {TASKS} tasks: {} committed, {rolled_back} failed at COMMIT and rewound; wallet at version {version}",
        times.len(),
        times.len() as u32 - rolled_back
    );

    // The proof: restore the backup and compare it with the database.
    let restored = dir.join(format!("restored-{version}.sqlite3"));
    let _ = std::fs::remove_file(&restored);
    let report = store.restore(restored.clone(), Default::default()).await?;
    let difference = {
        let _held = wallet.lock().await;
        compare_databases(&restored, &db, Labels::RESTORED_AND_EXPECTED)?
    };
    std::fs::remove_file(&restored)?;
    if let Some(d) = difference {
        return Err(format!("the restore differs from the wallet: {d}").into());
    }
    println!(
        "restored version {} ({} changes replayed): equal to the wallet's database, row by row",
        report.version, report.changes
    );

    let add = median(&mut times);
    let bare = bare_fdatasync_append(&dir, 500, 400)?;
    println!(
        "add_change p50 {:.3} ms; bare fdatasync append p50 {:.3} ms on the same disk ({:.2}x)",
        add.as_secs_f64() * 1e3,
        bare.as_secs_f64() * 1e3,
        add.as_secs_f64() / bare.as_secs_f64().max(1e-9)
    );
    Ok(())
}
