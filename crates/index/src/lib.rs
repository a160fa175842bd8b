//! The index of a strata store, over RocksDB.
//!
//! It answers "where do I already have these bytes" with one `multi_get` over all layers,
//! whatever their number (containers/storage scans a cache per layer instead), and it holds
//! the store's records so that a layer's files, its index entries and the image that uses
//! it become visible in one atomic write batch.
//!
//! Column families (the schema is documented in `docs/index.md`):
//! - `locs`: [`Key`] (kind byte + 32-byte digest) → up to [`MAX_LOCS`] [`Loc`]s (varints).
//! - `files`: layer number (u32 BE) + file number (u32 BE) → the store's file record.
//! - `records`: table byte + key → the store's records (layers, images, containers).
//! - `default`: counters (next layer number) and the schema version.

mod codec;
mod db;
mod key;

pub use db::{Batch, Index, IndexError, IndexStats, OpenMode, Record, Table};
pub use key::{Key, KeyKind, LayerNum, Loc, MAX_LOCS};
