//! zstd:chunked, containers/storage's seekable layer format: types, reader/validator, writer.
//!
//! - [`frame`], [`annotations`], [`toc`], [`time`]: the format's pieces as pure types
//!   (skippable frames and the footer, descriptor annotations, the TOC JSON).
//! - [`goheader`] and [`consistency`]: how containers/storage sees a tar header and which
//!   TOC entry it expects for it.
//! - [`writer`]: [`ZstdChunkedWriter`], a `TarOut` sink producing a blob.
//! - [`reader`]: [`open_layer`] fetches the TOC and tar-split through a [`RangeSource`],
//!   validates everything (`toc_check`, `consistency`, `bounded`) and returns a
//!   [`LayerPlan`] ([`plan`]): every entry, every chunk's location and digests.
//!
//! The format and every check are described in `docs/zstd-chunked.md`.

pub mod annotations;
pub mod bounded;
pub mod consistency;
pub mod frame;
pub mod goheader;
mod pipeline;
pub mod plan;
pub mod reader;
mod tarsplit_sink;
pub mod time;
pub mod toc;
pub mod toc_check;
pub mod writer;

pub use plan::{ChunkError, ChunkPlan, Limits, PlanEntry};
pub use reader::{FullPullReason, LayerPlan, RangeSource, ReadError, open_chunked, open_layer};
pub use writer::{WriteError, WriteResult, WriterOptions, ZstdChunkedWriter};
