//! The strata store: layers as overlay-ready directories sharing file data by reflink,
//! images and containers as records, and a RocksDB index of every file and chunk.
//!
//! Layout, publication order and locking are documented in `docs/on-disk-format.md` and
//! `docs/locking.md`. Each command is a method on [`Store`] in a module of its own.

mod acquire;
mod claims;
pub mod commit;
pub mod container;
pub mod df;
mod error;
pub mod export;
mod files;
pub mod fsck;
pub mod gc;
pub mod import;
mod ingest;
pub mod lock;
pub mod merge;
mod owner;
mod parallel;
pub mod paths;
mod pins;
pub mod progress;
mod publish;
pub mod pull;
pub mod push;
pub mod records;
pub mod recover;
mod remove;
mod resolve;
pub mod staging;
mod store;
mod time;

pub use acquire::Pinned;
pub use commit::CommitReport;
pub use error::StoreError;
pub use export::{ExportReport, LayerFormat};
pub use fsck::FsckReport;
pub use gc::GcReport;
pub use import::IngestReport;
pub use ingest::Bytes;
pub use lock::Wait;
pub use merge::{Conflict, ConflictKind, MergeReport, SquashReport};
pub use progress::{NoProgress, Progress};
pub use publish::{NewLoc, StagedLayer};
pub use store::{OpenOptions, Store};
