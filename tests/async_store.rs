//! The async handle as a tokio application uses it: four tasks writing one
//! store, each holding the application's lock around its transaction and
//! its report, and readers going on beside them without waiting for the
//! writes' syncs.
#![cfg(feature = "tokio")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use cln_backup::compare::{compare_databases, Labels};
use cln_backup::rusqlite::Connection;
use cln_backup::{AsyncStore, Error, Model};
use std::sync::Arc;
use tokio::sync::Mutex;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_tasks_write_through_one_lock_and_the_restore_equals_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.sqlite3");
    let store =
        AsyncStore::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true }).await.unwrap();
    let conn = Connection::open(&db).unwrap();
    conn.execute_batch("CREATE TABLE t (task INTEGER, n INTEGER, x REAL)").unwrap();
    store.add_change(1, vec!["CREATE TABLE t (task INTEGER, n INTEGER, x REAL)".into()]).await.unwrap();
    let app = Arc::new(Mutex::new(conn));
    let mut tasks = Vec::new();
    for task in 0..4 {
        let (app, store) = (app.clone(), store.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0..50 {
                let conn = app.lock().await;
                let sql = format!("INSERT INTO t VALUES ({task}, {n}, {:?})", f64::from(n) / 3.0);
                conn.execute_batch("BEGIN").unwrap();
                conn.execute_batch(&sql).unwrap();
                let version = store.store().version() + 1;
                store.add_change(version, vec![sql]).await.unwrap();
                conn.execute_batch("COMMIT").unwrap();
            }
        }));
    }
    // A reader beside them: the state and a view, each without the lock.
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut seen = 0;
            while seen < 201 {
                let status = store.status().await.unwrap();
                assert!(status.version >= seen);
                seen = status.version;
                let view = store.reader().await.unwrap();
                assert!(u32::try_from(view.head()).unwrap() >= seen);
                tokio::task::yield_now().await;
            }
        })
    };
    for t in tasks {
        t.await.unwrap();
    }
    reader.await.unwrap();
    assert_eq!(store.store().version(), 201);
    let restored = dir.path().join("restored.sqlite3");
    store.restore(restored.clone(), Default::default()).await.unwrap();
    drop(app);
    assert!(compare_databases(&restored, &db, Labels::RESTORED_AND_EXPECTED).unwrap().is_none());
    let verified = store.verify_against(Some(db.clone())).await.unwrap();
    assert!(verified.difference.is_none() && verified.version == 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_without_the_lock_are_told_they_raced() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        AsyncStore::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true }).await.unwrap();
    let mut tasks = Vec::new();
    for task in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut raced = 0;
            for n in 0..25 {
                // The version read, then the write: another task may come between.
                let version = store.store().version() + 1;
                match store.add_change(version, vec![format!("SELECT {task}, {n}")]).await {
                    Ok(_) => {}
                    Err(e @ Error::ConcurrentWrite { .. }) => {
                        assert!(e.is_retryable());
                        raced += 1;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            raced
        }));
    }
    let mut raced = 0;
    for t in tasks {
        raced += t.await.unwrap();
    }
    let status = store.status().await.unwrap();
    assert_eq!(u64::from(status.version) + raced, 100, "every write is stored or told it raced");
}
