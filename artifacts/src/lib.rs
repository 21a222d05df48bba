//! # textgcn-artifacts
//!
//! The artifact store that every textgcn stage writes and the trainer reads,
//! designed like git's object store and cargo's fingerprints:
//!
//! - **Objects** ([`Store::publish`]) are immutable and content-addressed
//!   (BLAKE3). Publishing writes a temp file, fsyncs it, renames it into place
//!   without replacing and fsyncs the directory. Every open re-hashes, so
//!   corruption is always reported ([`StoreError::Corrupt`]).
//! - **Columnar files** ([`EdgeIndex`], [`EdgeAttr`]) are single-batch,
//!   uncompressed, 64-byte aligned Arrow IPC files, opened by memory mapping
//!   with no copy.
//! - **Tables** ([`publish_table`], [`read_table`]) are deterministic Parquet.
//! - **Stage records** ([`StageRecord`], [`fingerprint`]) map a stage's
//!   fingerprint (name, code version, params, input hashes) to its outputs;
//!   **refs** ([`Ref`]) name the latest build of a config.
//! - **Locks**: builders share the store lock; a stage fingerprint has its own
//!   exclusive lock ([`Store::lock_stage`]); `gc` takes the store exclusively.
//!   All are `flock`s, released by the kernel when a holder dies.
//!
//! All `unsafe` lives in the private `mapped` module.

pub mod columnar;
mod direct;
pub mod error;
mod mapped;
pub mod store;
pub mod table;

pub use columnar::{EdgeAttr, EdgeIndex, MappedColumn, RowPtr, decode_column, open_column, publish_column};
pub use error::{Result, StoreError};
pub use mapped::Mmap;
pub use store::{Built, GcReport, Outcome, ObjectId, OpenMode, Ref, StageLock, StageRecord, Store, VerifyReport, failpoint, fingerprint, hash_bytes};
pub use table::{decode_table, publish_table, read_table, read_table_columns};
