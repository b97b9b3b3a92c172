//! The one panic boundary around redb.
//!
//! Owns [`guarded`], which turns a panic inside redb (some damaged pages are
//! met with `unreachable!`) into one [`Error::Corrupt`] naming the file, and
//! the process-wide panic hook that keeps such caught panics quiet. Every
//! call that touches redb runs inside `guarded`; this is the only place the
//! library catches panics. It must not know what the guarded code does.
//!
//! Decision: redb is built as the embedding program's profile says, with
//! debug assertions on in a debug build (a `[profile]` override in this
//! package's manifest does not reach its dependents), and those assertions
//! meet some damaged pages with a panic. Under `panic = "unwind"` (Rust's
//! default) `guarded` turns it into an error; under `panic = "abort"`
//! ([`PANICS_ABORT`]) every open checks the whole file first.

use crate::error::{Error, Result};
use std::cell::Cell;
use std::path::Path;
use std::sync::Once;

/// Whether a panic ends the process in this build (`panic = "abort"` in the
/// profile of the program the library is built into). [`guarded`] cannot
/// catch redb's panics then, so every open checks the whole file against
/// redb's checksums first (see `file::builder`): damage present when a
/// store is opened is an error before redb can meet it.
pub(crate) const PANICS_ABORT: bool = cfg!(panic = "abort");

thread_local! {
    /// How many [`guarded`] calls this thread is inside.
    static GUARD_DEPTH: Cell<u32> = const { Cell::new(0) };
}

static QUIET_HOOK: Once = Once::new();

/// Install, once per process, a panic hook that stays silent for panics
/// [`guarded`] is about to catch and hands every other panic to the hook that
/// was installed before it.
///
/// The library installs it because only the library knows which panics it
/// turns into errors: without it, Rust's default hook prints "thread 'main'
/// panicked at ..." (and a backtrace under `RUST_BACKTRACE`) for a damaged
/// page before the caller ever sees the `Corrupt` error, and a front end or an
/// embedding wallet cannot tell that message from a real crash. Panics outside
/// [`guarded`], in any thread, are reported exactly as before.
fn install_quiet_hook() {
    // A panic that ends the process is not caught: it is said as it is.
    if PANICS_ABORT {
        return;
    }
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if GUARD_DEPTH.with(Cell::get) == 0 {
                previous(info);
            }
        }));
    });
}

/// Leaves the guarded region when dropped, unwinding included.
struct Depth;

impl Depth {
    fn enter() -> Depth {
        GUARD_DEPTH.with(|d| d.set(d.get().saturating_add(1)));
        Depth
    }
}

impl Drop for Depth {
    fn drop(&mut self) {
        GUARD_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// Run `f`, turning a panic into [`Error::Corrupt`] naming `path`, silently.
///
/// redb meets some damaged pages with a panic (`unreachable!`) rather than an
/// error. A damaged store must be one clear error, never a crash or a panic
/// message: every call that touches redb goes through here, and this is the
/// only place the library catches panics.
pub(crate) fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    install_quiet_hook();
    let depth = Depth::enter();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    drop(depth);
    match caught {
        Ok(r) => r,
        Err(payload) => {
            let what = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("unknown failure");
            Err(Error::corrupt(path, format!("the storage engine failed on a damaged page ({what})")))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const CHILD: &str = "CLN_BACKUP_GUARDED_CHILD";

    /// Run in a child process by `guarded_is_silent_and_other_panics_are_not`,
    /// where nothing captures stderr.
    #[test]
    fn guarded_child() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        let err =
            guarded(Path::new("/x/store.redb"), || -> Result<()> { panic!("inside-guarded-marker") }).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("/x/store.redb: the store is damaged"), "{err}");
        // Nested, and after a caught panic, still silent.
        let nested =
            guarded(Path::new("/x/a"), || guarded(Path::new("/x/b"), || -> Result<()> { panic!("nested-marker") }));
        assert!(nested.is_err());
        // A panic outside the boundary goes to the hook that was there before.
        let outside = std::panic::catch_unwind(|| panic!("outside-guarded-marker"));
        assert!(outside.is_err());
        eprintln!("child-done");
    }

    #[test]
    fn guarded_is_silent_and_other_panics_are_not() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "store::guard::tests::guarded_child", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(err.contains("child-done"), "the child did not run: {err}");
        assert!(!err.contains("inside-guarded-marker"), "guarded let a panic message through: {err}");
        assert!(!err.contains("nested-marker"), "guarded let a panic message through: {err}");
        assert!(err.contains("outside-guarded-marker"), "a panic outside guarded was silenced: {err}");
    }
}
