//! Helpers shared by the fuzz targets and the seed generator (`seeds`):
//!
//! - [`input::Bytes`]: structured values drawn from the fuzzer's bytes;
//! - [`tarspec`]: a tar writer driven by those values (valid checksums, PAX, GNU long names,
//!   whiteouts, links into and out of the tree), so targets reach the code behind the parser;
//! - [`checksum::fix_checksums`]: repairs the header checksums of a raw tar, so mutations of
//!   real tars are not all stopped at the first checksum;
//! - [`content`]: the deterministic file contents the tar-split targets regenerate from;
//! - [`sandbox`]: a private tmpfs for the extraction target.

pub mod checksum;
pub mod content;
pub mod input;
pub mod sandbox;
pub mod tarspec;
