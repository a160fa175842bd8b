//! The strata store: layers as overlay-ready directories sharing file data by reflink,
//! images and containers as records, and a RocksDB index of every file and chunk.
//!
//! Layout, publication order and locking are documented in `docs/on-disk-format.md` and
//! `docs/locking.md`. Each command is a method on [`Store`] in a module of its own.

pub mod container;
pub mod df;
mod error;
pub mod lock;
pub mod paths;
mod publish;
pub mod records;
pub mod recover;
pub mod staging;
mod store;

pub use error::StoreError;
pub use lock::Wait;
pub use publish::{NewLoc, StagedLayer};
pub use store::{Access, OpenOptions, Store};
