//! Typed values shared by every strata crate.
//!
//! - [`Sha256Digest`] and [`Blake3Digest`]: content digests, never passed around as strings.
//! - [`LayerId`] (a layer's DiffID) and [`ImageName`]: typed identifiers.
//! - [`RelPath`]: a normalized path inside a layer or root filesystem. Constructing one is
//!   the single place where `..`, absolute names and empty components are rejected.
//! - [`Entry`]: one file system object as a layer describes it (tar header, TOC entry,
//!   upperdir inode), the common currency between the differ, the tar code and the store.

mod digest;
mod entry;
mod id;
mod relpath;

pub use digest::{Blake3Digest, Blake3Hasher, DigestError, Sha256Digest, Sha256Hasher};
pub use entry::{Entry, EntryKind, Timestamp, Xattrs};
pub use id::{IdError, ImageName, LayerId};
pub use relpath::{RelPath, RelPathError};
