//! Typed errors of the artifact store.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in the store. Each variant names the object
/// or path concerned, so a user can find what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O operation on a store path failed.
    /// The message says the operating system's error, so it is not also
    /// returned as the error's source (which would print it twice).
    #[error("{op} {}: {error}", path.display())]
    Io {
        /// What was being done ("creating", "reading", "renaming", ...).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The operating system's error.
        error: io::Error,
    },
    /// An object's bytes no longer hash to its name (flipped bits, truncation,
    /// extension, or another object's content under this name).
    #[error("object {id} is corrupt ({}): expected hash {expected}, found {actual}", path.display())]
    Corrupt {
        /// The object's id (its expected hash).
        id: String,
        /// Where it lies.
        path: PathBuf,
        /// The expected BLAKE3 hash (the id).
        expected: String,
        /// The hash of the bytes actually found.
        actual: String,
    },
    /// A record or ref names an object that is not in the store.
    #[error("object {id} is missing ({})", path.display())]
    Missing {
        /// The object's id.
        id: String,
        /// Where it should lie.
        path: PathBuf,
    },
    /// The object exists and verifies, but is not a valid file of the kind
    /// expected (wrong schema, misaligned buffers, not Arrow/Parquet at all).
    #[error("object {id} is not a valid {kind}: {detail}")]
    Format {
        /// The object's id.
        id: String,
        /// What it was opened as ("edge_index IPC file", "Parquet table", ...).
        kind: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A stage record or ref could not be parsed.
    #[error("{}: invalid {what}: {detail}", path.display())]
    BadMetadata {
        /// The record or ref file.
        path: PathBuf,
        /// "stage record" or "ref".
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A file of the store that is not what it should be: an object that is
    /// not a regular file or not of its recorded size, a `tmp` that is a link.
    #[error("{}: {detail}", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// A directory that is not a store and cannot become one (not empty, no
    /// `STORE` marker), or a store of another layout.
    #[error("refusing to use {} as a store: {reason}", path.display())]
    NotAStore {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// An operation that would be unsafe in the store's present state
    /// (`gc` while a ref reaches a damaged record); nothing was changed.
    #[error("{op} refused, nothing was removed: {detail}")]
    Refused {
        /// The operation.
        op: &'static str,
        /// Why, and what to do.
        detail: String,
    },
    /// A string that should be an object id (64 hex digits) is not one.
    #[error("invalid object id {0:?}: expected 64 lowercase hex digits")]
    BadId(String),
    /// A ref name with characters that cannot be a file name.
    #[error("invalid ref name {0:?}: use letters, digits, '-', '_' and '.'")]
    BadRefName(String),
    /// No ref of that name.
    #[error("no ref named {name:?} in store {}", store.display())]
    NoSuchRef {
        /// The ref asked for.
        name: String,
        /// The store searched.
        store: PathBuf,
    },
}

/// Result alias for store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Extension that attaches an operation and path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| StoreError::Io { op, path: path.into(), error: source })
    }
}

/// Runs a third-party decoder on untrusted bytes, turning a panic of it
/// (arrow and parquet assert on some malformed inputs; the `artifact` fuzz
/// target found several) into the error `fmt` makes of its message.
pub(crate) fn decode_guard<T>(fmt: impl Fn(String) -> StoreError, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default();
        Err(fmt(format!("the decoder failed: {msg}")))
    })
}
