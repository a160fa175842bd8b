//! Content-defined chunking and file assembly.
//!
//! - [`cdc`]: FastCDC (v2020) chunk boundaries with strata's parameters; pure functions
//!   over bytes.
//! - [`digest`]: chunk + BLAKE3 (+ optional SHA-256) of whole files, on all cores.
//! - [`assemble`]: write a file from verified local ranges (reflinked when the block phase
//!   allows, copied otherwise), bytes at hand, holes and still-missing pieces.

pub mod assemble;
pub mod cdc;
pub mod digest;

pub use assemble::{Assembled, Assembler, Expect, Fill, LocalRange, Method, Piece, SourceFile};
pub use digest::{
    Chunk, FileDigests, HashOptions, digest_bytes, digest_file, digest_path, digest_paths, digest_stream,
};
