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
//!   fingerprint (name, code version, params, input hashes) to its outputs
//!   (id, [`ObjectKind`], size) and carry a digest of their content;
//!   **refs** ([`Ref`]) name the latest build of a config and pin each
//!   record's digest, so from a ref down to the bytes every link is a hash.
//! - **Maintenance** ([`Store::verify`], [`Store::repair`], [`Store::gc`]):
//!   every object, record and ref checked; damage moved to `quarantine/`;
//!   garbage removed only when everything a ref reaches can be trusted.
//! - **Locks**: builders share the store lock; a stage fingerprint has its own
//!   exclusive lock ([`Store::lock_stage`]); `gc` takes the store exclusively.
//!   All are `flock`s, released by the kernel when a holder dies.
//!
//! All `unsafe` lives in the private `mapped` module.

pub mod atomic;
pub mod columnar;
mod direct;
pub mod error;
mod failpoint;
mod id;
mod layout;
mod lock;
pub mod maintain;
mod mapped;
mod nofollow;
pub mod record;
pub mod store;
pub mod table;

pub use columnar::{ColumnSink, EdgeAttr, EdgeIndex, MappedColumn, RowPtr, decode_column, open_column, publish_column, publish_column_streamed};
pub use error::{Result, StoreError};
pub use mapped::Mmap;
pub use maintain::{GcReport, Part, Problem, RepairReport, VerifyReport};
pub use record::{ObjectKind, Output, Ref, RefStage, StageRecord, fingerprint};
pub use failpoint::{failpoint, observe};
pub use id::{ObjectId, hash_bytes};
pub use layout::LAYOUT_VERSION;
pub use lock::StageLock;
pub use store::{Built, OpenMode, Outcome, RecordState, Store};
pub use table::{ROW_GROUP_BYTES, TableBatches, TableSink, decode_table, publish_table, publish_table_streamed, publish_table_streamed_with, read_table, read_table_batches, read_table_columns};
