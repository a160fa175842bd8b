//! The only unsafe code in strata: ioctls that neither `nix` nor `reflink-copy` wrap.
//!
//! - [`fiemap`]: the extent map of a file (`FS_IOC_FIEMAP`), with the `SHARED` flag that
//!   tells which extents are reflinked. `strata df`, `gc` and the tests use it to measure
//!   physical sharing honestly instead of summing file sizes.
//!
//! - [`map_readonly`]: memory maps of immutable files (memmap2's constructor is unsafe).
//!
//! Every `unsafe` block carries a `// SAFETY:` comment; the functions exported are safe.

#![deny(unsafe_op_in_unsafe_fn)]

mod fiemap;
mod mmap;

pub use fiemap::{Extent, ExtentFlags, fiemap};
pub use mmap::map_readonly;
