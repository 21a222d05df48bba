//! Test hooks: named points where a test can make the process kill itself
//! ([`failpoint`], to check that every step of a publish is crash-safe),
//! and named waits a test in the same process can observe ([`observe`],
//! to order threads by events instead of by sleeps).

use std::path::Path;
use std::sync::OnceLock;

type Observer = fn(&'static str, &Path);
static OBSERVER: OnceLock<Observer> = OnceLock::new();

/// Installs `f` to be told of each observable step, with the store's root:
/// `opener-waits-at-gate` (an opener found the gate closed and blocks
/// until it opens) and `roll-back-closed-gate` (a roll-back closed the
/// gate and now waits for the store lock). For tests; one observer per
/// process: returns `false` (and changes nothing) when one is installed.
pub fn observe(f: Observer) -> bool {
    OBSERVER.set(f).is_ok()
}

/// Tells the observer, if any, that step `name` was reached in store `root`.
pub(crate) fn reached(name: &'static str, root: &Path) {
    if let Some(f) = OBSERVER.get() {
        f(name, root);
    }
}

/// Crash-test hook: when the environment variable `TEXTGCN_FAILPOINT` is
/// `name` (or `name:N`), the process kills itself with SIGKILL at this
/// point (at its N-th pass, default the first). Used by the kill tests to
/// stop a build at exactly the named step of any publish. Fail-points:
/// `after-temp-write`, `after-fsync`, `after-rename` (objects),
/// `before-record`, `after-record`, `before-ref`.
pub fn failpoint(name: &str) {
    static WANTED: OnceLock<Option<(String, usize)>> = OnceLock::new();
    static HITS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let wanted = WANTED.get_or_init(|| {
        let v = std::env::var("TEXTGCN_FAILPOINT").ok()?;
        Some(match v.split_once(':') {
            Some((n, k)) => (n.to_owned(), k.parse().unwrap_or(1).max(1)),
            None => (v, 1),
        })
    });
    if let Some((want, nth)) = wanted
        && want == name
        && HITS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == *nth
    {
        crate::mapped::kill_self();
    }
}
