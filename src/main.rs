//! The `cln-backup` binary.
//!
//! Owns the process: choosing between plugin mode (started by lightningd with
//! `LIGHTNINGD_PLUGIN=1`) and the command line, setting up logging, and
//! turning a failure into one `error: ...` line on stderr and a non-zero exit.
//! It must not hold any logic of its own: that is in `cli` and the library.
//! Built with the `cli` and `plugin` features (the default); the library
//! builds without them.

mod cli;
mod plugin;
mod server;

use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    if started_by_lightningd() {
        return plugin_main();
    }
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => return usage_error(e),
    };
    // A server logs each connection by default; other commands warnings only.
    let server = matches!(args.command, cli::Command::Server(_));
    init_logging(if server { "info" } else { "warn" });
    // The server stops cleanly by itself on these signals.
    if !server {
        stop_on_signals();
    }
    match args.command.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}{}", one_line(&err), hint(&err));
            ExitCode::FAILURE
        }
    }
}

/// What the command line adds to a library error in its own terms: who
/// holds a locked store, and how to ask it instead.
fn hint(err: &anyhow::Error) -> &'static str {
    let locked = err.chain().any(|c| matches!(c.downcast_ref(), Some(cln_backup::Error::StoreLocked { .. })));
    if locked {
        " (a running node's plugin? stop the node first, or ask the plugin with `lightning-cli backup-status`)"
    } else {
        ""
    }
}

/// A command line clap refused, on one line as every other failure (exit
/// status 2); help and version requests are printed as clap prints them.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    eprintln!("{}", usage_line(&e.render().to_string()));
    ExitCode::from(2)
}

/// clap's multi-line message as one line: `Usage:` in parentheses, the
/// pointer to --help dropped (the usage says it).
fn usage_line(text: &str) -> String {
    let mut line = String::new();
    for part in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("For more information")) {
        let part = match part.strip_prefix("Usage: ") {
            Some(usage) => format!("(usage: {usage})"),
            None if part.starts_with("tip:") => format!("({part})"),
            None => part.to_string(),
        };
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&part);
    }
    line
}

/// lightningd starts its plugins with `LIGHTNINGD_PLUGIN=1`.
fn started_by_lightningd() -> bool {
    std::env::var_os("LIGHTNINGD_PLUGIN").is_some_and(|v| v == "1")
}

/// Plugin mode: stdin and stdout belong to lightningd; errors go to stderr,
/// which lightningd copies into its log.
fn plugin_main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cln-backup: cannot start the plugin runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(plugin::run());
    // Do not wait for tasks still reading pipes that lightningd has closed.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cln-backup: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// SIGINT (Ctrl-C) or SIGTERM during a command: remove the temporaries it
/// made, say on one line what was interrupted, and exit with 130 (SIGINT)
/// or 143 (SIGTERM), as a shell reports a process the signal stopped.
/// Decision: without this the default action killed the process silently
/// and left a half-written temporary beside a restore's DEST until the next
/// run; what a command already placed (whole, synced files) stays.
fn stop_on_signals() {
    use tokio::signal::unix::{signal, SignalKind};
    // The watching thread installs the handlers and says so before the
    // command starts, so that no signal falls between the two; if it cannot
    // run, none is installed and the signals keep their default action.
    let (ready, installed) = std::sync::mpsc::sync_channel::<bool>(1);
    let spawned = std::thread::Builder::new().name("signals".into()).spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            let _ = ready.send(false);
            return;
        };
        let (name, code) = runtime.block_on(async {
            let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
                let _ = ready.send(false);
                return std::future::pending().await;
            };
            let _ = ready.send(true);
            tokio::select! {
                _ = int.recv() => ("SIGINT", 130),
                _ = term.recv() => ("SIGTERM", 143),
            }
        });
        let removed = cln_backup::atomic_file::remove_unfinished();
        let what = removed.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
        if what.is_empty() {
            eprintln!("error: interrupted by {name}");
        } else {
            eprintln!(
                "error: {what}: interrupted by {name}; nothing was written there (the unfinished file is removed)"
            );
        }
        std::process::exit(code);
    });
    match spawned.map(|_| installed.recv()) {
        Ok(Ok(true)) => {}
        _ => tracing::warn!(
            "cannot watch for SIGINT and SIGTERM: an interrupted command leaves its temporaries to the next run"
        ),
    }
}

/// Logging to stderr; `RUST_LOG` chooses the level, `default` otherwise.
fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only on a terminal: a log file or journal gets plain text.
    let ansi = std::io::stderr().is_terminal();
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
}

/// The error and its causes on one line. The library's messages already
/// include their source's text, so a cause whose text is already shown is
/// not repeated.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let lib = cln_backup::Error::Io { path: "/x/store.redb".into(), source: io };
        let err = anyhow::Error::new(lib).context("opening the store");
        assert_eq!(one_line(&err), "opening the store: /x/store.redb: No such file");
    }

    #[test]
    fn usage_errors_are_one_line() {
        let err = cli::Cli::try_parse_from(["cln-backup", "restore", "--to-version", "-1", "a", "b"]).unwrap_err();
        let line = usage_line(&err.render().to_string());
        assert!(line.starts_with("error: unexpected argument '-1' found (tip: "), "{line}");
        assert!(line.ends_with("(usage: cln-backup restore [OPTIONS] <SOURCE> <DEST>)"), "{line}");
        assert!(!line.contains('\n'), "{line}");
    }

    #[test]
    fn messages_are_flattened_to_one_line() {
        let err = anyhow::anyhow!("/x/db: SQLite: failed (while running: INSERT\n  INTO t)");
        assert_eq!(one_line(&err), "/x/db: SQLite: failed (while running: INSERT   INTO t)");
    }
}
