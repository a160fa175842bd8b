//! File contents for the tar-split targets: the file named N of size S holds
//! `S` bytes of a fixed pattern starting at [`offset_of`]`(N)`, so one shared file can serve
//! every `open(name, size)` of [`strata_layer::tarsplit::regenerate`], and seeds built from
//! the same rule regenerate with matching CRCs.

use std::fs::File;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use strata_layer::tarsplit::crc64;

/// Largest file the fake store holds; bigger sizes are "no such file".
pub const MAX_FILE: u64 = 1 << 20;
const PATTERN_LEN: u64 = 2 * MAX_FILE;

pub fn pattern_byte(i: u64) -> u8 {
    (i.wrapping_mul(2654435761) >> 13) as u8
}

/// Where the content of `name` starts in the pattern.
pub fn offset_of(name: &[u8]) -> u64 {
    crc64(name) % MAX_FILE
}

/// The content of file `name` with `size` bytes (`size <= MAX_FILE`).
pub fn content(name: &[u8], size: u64) -> Vec<u8> {
    let off = offset_of(name);
    (off..off + size).map(pattern_byte).collect()
}

/// An unlinked temporary file holding the whole pattern.
pub fn pattern_file() -> io::Result<File> {
    let mut f = scratch_file()?;
    let data: Vec<u8> = (0..PATTERN_LEN).map(pattern_byte).collect();
    f.write_all(&data)?;
    Ok(f)
}

/// `open` for `regenerate`: every name up to [`MAX_FILE`] bytes exists.
pub fn open(file: &File, name: &[u8], size: u64) -> io::Result<Option<(File, u64)>> {
    if size > MAX_FILE {
        return Ok(None);
    }
    Ok(Some((file.try_clone()?, offset_of(name))))
}

/// A new unlinked read-write file (on tmpfs when there is one).
pub fn scratch_file() -> io::Result<File> {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = if std::path::Path::new("/dev/shm").is_dir() { "/dev/shm".into() } else { std::env::temp_dir() };
    let n = N.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("strata-fuzz-scratch-{}-{n}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let f = File::options().read(true).write(true).create_new(true).open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(f)
}
