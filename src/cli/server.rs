//! `cln-backup server`: serve a store to backup clients over the socket
//! protocol.
//!
//! Owns the subcommand's arguments and their checks before anything is
//! opened. It must not serve anything itself: `crate::server` runs the
//! listener, and the library answers each connection.

use anyhow::Result;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
#[command(
    about = "Serve a store to remote nodes over the socket protocol",
    long_about = "Serve STORE to backup clients over the socket protocol (the Python backup \
        plugin's socket:host:port backend, and cln-backup's own).\n\n\
        Each change a client sends is acknowledged only once the store has it on disk. \
        One connection is served at a time; others wait until it closes, or until it \
        has been quiet for --yield-after seconds. The listening address is printed on \
        stdout once the server is ready.\n\n\
        The server listens on loopback by default: reach it through an SSH tunnel, a \
        VPN or a Tor onion service. Listening on another address needs --allow-remote, \
        and then a --token-file is strongly advised: the protocol has no encryption.\n\n\
        SIGINT or SIGTERM stop the server cleanly: the change in progress is finished or \
        not stored at all, and the store is closed.\n\n\
        STORE must exist: create it with `cln-backup init STORE`."
)]
pub struct Args {
    /// The address to listen on: IP:PORT, [IPv6]:PORT or a host name and port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8700")]
    pub listen: String,

    /// Accept listening on an address other than loopback.
    #[arg(long)]
    pub allow_remote: bool,

    /// A file holding the pre-shared token every client must send first;
    /// connections without it are refused.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Close a connection quiet for this many seconds when another client
    /// waits (a node whose old connection vanished, an operator's restore).
    /// Well below a client's 60-second wait for an answer, so that the
    /// waiting client is served before it gives up.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub yield_after: u64,

    /// The store: a path or a file:// URL.
    #[arg(value_name = "STORE")]
    pub store: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let store = super::store_path(&args.store)?;
    crate::server::run(crate::server::Config {
        listen: args.listen,
        allow_remote: args.allow_remote,
        token_file: args.token_file,
        yield_after: std::time::Duration::from_secs(args.yield_after),
        store,
    })
}
