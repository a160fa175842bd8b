//! `FS_IOC_FIEMAP`: which physical extents back a file.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `FIEMAP_FLAG_SYNC`: flush dirty data first so delayed allocations show up as extents.
const FIEMAP_FLAG_SYNC: u32 = 0x1;
const EXTENTS_PER_CALL: usize = 256;

/// Flags of one extent (see linux/fiemap.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtentFlags(pub u32);

impl ExtentFlags {
    pub const LAST: u32 = 0x1;
    pub const UNKNOWN: u32 = 0x2;
    pub const DELALLOC: u32 = 0x4;
    pub const ENCODED: u32 = 0x8;
    pub const NOT_ALIGNED: u32 = 0x100;
    pub const DATA_INLINE: u32 = 0x200;
    pub const DATA_TAIL: u32 = 0x400;
    pub const UNWRITTEN: u32 = 0x800;
    pub const MERGED: u32 = 0x1000;
    pub const SHARED: u32 = 0x2000;

    pub fn is_shared(self) -> bool {
        self.0 & Self::SHARED != 0
    }
    pub fn is_last(self) -> bool {
        self.0 & Self::LAST != 0
    }
    /// Data stored in the inode or a shared tail block: no extent of its own to count.
    pub fn is_inline(self) -> bool {
        self.0 & (Self::DATA_INLINE | Self::NOT_ALIGNED) != 0
    }
}

/// One mapped extent of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// Byte offset in the file.
    pub logical: u64,
    /// Byte offset on the device.
    pub physical: u64,
    pub length: u64,
    pub flags: ExtentFlags,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct RawExtent {
    fe_logical: u64,
    fe_physical: u64,
    fe_length: u64,
    fe_reserved64: [u64; 2],
    fe_flags: u32,
    fe_reserved: [u32; 3],
}

#[repr(C)]
struct RawFiemap {
    fm_start: u64,
    fm_length: u64,
    fm_flags: u32,
    fm_mapped_extents: u32,
    fm_extent_count: u32,
    fm_reserved: u32,
    fm_extents: [RawExtent; EXTENTS_PER_CALL],
}

nix::ioctl_readwrite!(fs_ioc_fiemap, b'f', 11, RawFiemapHeader);

/// The fixed-size head of `struct fiemap`; the ioctl number encodes its size (32 bytes).
#[repr(C)]
pub struct RawFiemapHeader {
    fm_start: u64,
    fm_length: u64,
    fm_flags: u32,
    fm_mapped_extents: u32,
    fm_extent_count: u32,
    fm_reserved: u32,
}

/// All extents of `file`, in file order. Holes are absent. Fails with `EOPNOTSUPP` on
/// filesystems without FIEMAP (e.g. tmpfs).
pub fn fiemap(file: &File) -> io::Result<Vec<Extent>> {
    let mut out = Vec::new();
    let mut start = 0u64;
    loop {
        let mut req = Box::new(RawFiemap {
            fm_start: start,
            fm_length: u64::MAX - start,
            fm_flags: FIEMAP_FLAG_SYNC,
            fm_mapped_extents: 0,
            fm_extent_count: EXTENTS_PER_CALL as u32,
            fm_reserved: 0,
            fm_extents: [RawExtent::default(); EXTENTS_PER_CALL],
        });
        let ptr = (&mut *req as *mut RawFiemap).cast::<RawFiemapHeader>();
        // SAFETY: `ptr` points to a live, exclusively borrowed `RawFiemap`, whose layout is
        // `struct fiemap` followed by room for `fm_extent_count` extents, exactly what the
        // kernel writes into (it never writes more than fm_extent_count extents). The fd is
        // valid for the duration of the call because `file` is borrowed.
        unsafe { fs_ioc_fiemap(file.as_raw_fd(), ptr) }.map_err(io::Error::from)?;
        let n = req.fm_mapped_extents as usize;
        let mut last = false;
        for e in &req.fm_extents[..n.min(EXTENTS_PER_CALL)] {
            let flags = ExtentFlags(e.fe_flags);
            out.push(Extent { logical: e.fe_logical, physical: e.fe_physical, length: e.fe_length, flags });
            last |= flags.is_last();
        }
        match out.last() {
            Some(e) if !last && n == EXTENTS_PER_CALL => start = e.logical + e.length,
            _ => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn maps_a_written_file_and_reports_holes_as_gaps() {
        let dir = std::env::temp_dir().join(format!("strata-sys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f");
        let mut f = File::create(&p).unwrap();
        f.write_all(&vec![7u8; 1 << 20]).unwrap();
        f.set_len(8 << 20).unwrap(); // a 7 MiB hole at the end
        f.sync_all().unwrap();
        let f = File::open(&p).unwrap();
        match fiemap(&f) {
            Ok(ext) => {
                let mapped: u64 = ext.iter().map(|e| e.length).sum();
                assert!((1 << 20..2 << 20).contains(&mapped), "mapped {mapped} bytes: {ext:?}");
                assert_eq!(ext[0].logical, 0);
                assert!(!ext.iter().any(|e| e.flags.is_shared()));
            }
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP), "{e}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
