//! Crash points for the crash-safety tests.
//!
//! `BERTH_FAILPOINT=<name>` in the daemon's environment makes it kill itself with SIGKILL
//! (exactly what `kill -9` does: no destructors, no flushing) the first time it reaches the
//! point of that name. Every point sits between two steps whose order the restart recovery in
//! [`crate::daemon`] relies on; `crates/berth/tests/engine_crash.rs` crashes at each and checks
//! that a restarted daemon loses nothing, duplicates nothing and leaves nothing behind.
//! Unset (always, outside tests), a point costs one comparison.

use std::sync::OnceLock;

/// Every point, in the order a container meets them.
pub const POINTS: &[&str] = &[
    "create.dir",
    "create.volumes",
    "create.hold",
    "create.saved",
    "start.mounted",
    "start.monitor",
    "start.started",
    "exit.cleaned",
    "rm.renamed",
    "rm.volumes",
    "rm.deleted",
];

/// Die here if the environment names this point.
pub(crate) fn hit(name: &str) {
    static WANT: OnceLock<Option<String>> = OnceLock::new();
    if WANT.get_or_init(|| std::env::var("BERTH_FAILPOINT").ok()).as_deref() == Some(name) {
        eprintln!("berth daemon: failpoint {name}: killing myself");
        // SAFETY: kill(2) on our own pid with a constant signal has no memory effects.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
}
