//! OCI layer tar streams.
//!
//! - [`out`]: [`TarOut`], the one interface every producer of a layer stream writes to
//!   (the differ's writer, tar-split regeneration, import's tap), and [`Tee`].
//! - [`out_file`]: sinks that write a stream to a file (zero-copy) or any `Write`.
//! - [`par_compress`]: zstd or gzip compression in independent frames/members on all cores.
//! - [`parse`]: a streaming tar reader that keeps every raw byte it does not interpret.
//! - [`tarsplit`]: tar-split records: rebuild a layer's exact tar from its files.
//! - [`apply`]: extraction of a layer into a directory that no entry can escape.

pub mod apply;
pub mod out;
pub mod out_file;
pub mod par_compress;
pub mod parse;
pub mod tarsplit;

pub use out::{TarOut, Tee};
