//! The `cln-backup` binary: the lightningd plugin when lightningd starts it
//! (`LIGHTNINGD_PLUGIN=1`), otherwise the command line.

use std::process::ExitCode;

fn main() -> ExitCode {
    if std::env::var_os("LIGHTNINGD_PLUGIN").is_some() {
        return plugin_main();
    }
    eprintln!("error: the command line is not available in this build");
    ExitCode::FAILURE
}

fn plugin_main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cln-backup: cannot start the plugin runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(cln_backup::plugin::run());
    // Do not wait for tasks still reading pipes that lightningd has closed.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cln-backup: {e:#}");
            ExitCode::FAILURE
        }
    }
}
