//! Opens the store named on the command line as an application would, reads
//! it whole and restores its head to OUT, then prints what happened on one
//! line: `ok VERSION` or `error KIND: MESSAGE`. It must end normally
//! whatever the file holds: tests/embedding.rs checks that a damaged store
//! is an error, never an abort, in a build where a panic aborts.

use cln_backup::{restore, Store};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(store), Some(out)) = (args.next(), args.next()) else {
        eprintln!("usage: cln-backup-embedder STORE OUT");
        return ExitCode::from(2);
    };
    let out = PathBuf::from(out);
    let result = (|| -> cln_backup::Result<u32> {
        let store = Store::open_read_only(&store)?;
        let reader = store.reader()?;
        for change in reader.changes(reader.head())? {
            change?;
        }
        Ok(restore::restore_store(&store, &out, &Default::default())?.version)
    })();
    match result {
        Ok(v) => println!("ok {v}"),
        Err(e) => println!("error {:?}: {e}", e.kind()),
    }
    ExitCode::SUCCESS
}
