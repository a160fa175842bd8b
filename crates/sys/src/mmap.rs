//! Read-only memory maps of immutable files.

use std::fs::File;
use std::io;

/// Maps `file` read-only.
///
/// Only for files strata owns and never modifies after writing them: committed layer files
/// and staging files of the current operation. A file truncated under a live map would
/// raise SIGBUS on access; layer files are only ever unlinked (the map keeps the inode).
pub fn map_readonly(file: &File) -> io::Result<memmap2::Mmap> {
    // SAFETY: memmap2 requires that the mapped file is not modified (truncated or written)
    // while the map lives. Callers only map files that strata itself wrote and treats as
    // immutable (see the doc comment), and the map borrows nothing from `file` beyond the fd
    // used during the mmap call.
    unsafe { memmap2::Mmap::map(file) }
}
