//! Writing a [`Changeset`] as an OCI layer tar into a [`TarOut`].
//!
//! Format: POSIX.1-2001 (PAX) tar. Each entry is an optional PAX extended header (`path`,
//! `linkpath`, `size`, `uid`, `gid`, `mtime` with nanoseconds, `SCHILY.xattr.*`, and a
//! `comment` record used as padding), then a ustar header with numeric ids and empty
//! uname/gname. Output is a pure function of the changeset and the files' contents: no
//! atime/ctime, no user names, no process ids.
//!
//! With [`WriteOptions::align_data`] (the default), the padding comment makes every regular
//! file's data start on a 4096-byte boundary of the stream, so a sink can move the data with
//! copy_file_range and, on XFS/btrfs, share the source's extents instead of copying them.

use std::collections::{HashMap, HashSet};
use std::fs::File;

use strata_layer::TarOut;
use strata_types::{Entry, EntryKind, RelPath};

use crate::DiffError;
use crate::changeset::{ChangeKind, Changeset, InodeKey};
use crate::inode::{io_err, is_oci_whiteout_name, is_overlay_xattr};
use crate::tar_header::{BLOCK, MAX_OCTAL_8, MAX_OCTAL_12, Ustar, pax_data, pax_record, pax_time, round_up};
use crate::tree::Source;

/// How to write a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteOptions {
    /// Put every regular file's data on a 4096-byte boundary of the stream (default true).
    pub align_data: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions { align_data: true }
    }
}

/// What [`write_layer`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Tar entries (PAX extended headers not counted), whiteouts included.
    pub entries: u64,
    /// Whiteout entries (`.wh.NAME` and `.wh..wh..opq`).
    pub whiteouts: u64,
    /// Bytes of the tar stream, trailer included.
    pub bytes: u64,
}

struct Writer<'a> {
    out: &'a mut dyn TarOut,
    opts: WriteOptions,
    pos: u64,
    stats: WriteStats,
}

/// Writes `cs` as a layer tar into `out`, following the [`TarOut`] call protocol.
pub fn write_layer(cs: &Changeset, out: &mut dyn TarOut, opts: &WriteOptions) -> Result<WriteStats, DiffError> {
    let mut w = Writer { out, opts: *opts, pos: 0, stats: WriteStats::default() };
    let mut dirs: HashSet<RelPath> = HashSet::new();
    let mut names: HashSet<Vec<u8>> = HashSet::new();
    let mut first_names: HashMap<InodeKey, Vec<u8>> = HashMap::new();
    for change in cs.iter() {
        let tar_path = change.tar_path();
        if tar_path.is_empty() {
            continue; // the root directory itself is not written
        }
        if !names.insert(tar_path.clone()) {
            return Err(DiffError::DuplicatePath { path: String::from_utf8_lossy(&tar_path).into_owned() });
        }
        let parent = match change.kind {
            ChangeKind::Opaque => Some(change.path.clone()),
            _ => change.path.parent(),
        };
        if let Some(parent) = parent.filter(|p| !p.is_root())
            && !dirs.contains(&parent)
        {
            return Err(DiffError::MissingParent {
                path: String::from_utf8_lossy(&tar_path).into_owned(),
                parent: parent.to_string(),
            });
        }
        if change.is_whiteout() {
            w.whiteout(&tar_path)?;
            continue;
        }
        let entry = change.entry.as_ref().ok_or_else(|| DiffError::MissingParent {
            path: change.path.to_string(),
            parent: "(add/modify change without an entry)".into(),
        })?;
        if change.path.file_name().is_some_and(is_oci_whiteout_name) {
            return Err(DiffError::WhiteoutName { path: change.path.as_path().to_path_buf() });
        }
        if entry.kind == EntryKind::Dir {
            dirs.insert(change.path.clone());
        }
        let link_to = match (entry.kind, change.hardlink) {
            (EntryKind::File, Some(key)) => match first_names.get(&key) {
                Some(first) => Some(first.clone()),
                None => {
                    first_names.insert(key, tar_path.clone());
                    None
                }
            },
            _ => None,
        };
        match link_to {
            Some(target) => w.object(entry, &tar_path, Some(&target), None)?,
            None => w.object(entry, &tar_path, None, change.source.as_ref())?,
        }
    }
    w.out.segment(&[0u8; 1024]).map_err(DiffError::Output)?;
    w.pos += 1024;
    Ok(WriteStats { bytes: w.pos, ..w.stats })
}

impl Writer<'_> {
    fn emit(&mut self, bytes: &[u8]) -> Result<(), DiffError> {
        self.out.segment(bytes).map_err(DiffError::Output)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// Header segment (PAX header when needed, then ustar), then the payload protocol.
    fn entry(
        &mut self,
        h: Ustar<'_>,
        full_name: &[u8],
        mut records: Vec<u8>,
        data: Option<&File>,
    ) -> Result<(), DiffError> {
        if h.name.len() > 100 {
            records.splice(0..0, pax_record("path", h.name));
        }
        let align = (self.opts.align_data && h.typeflag == b'0' && h.size > 0).then_some(self.pos);
        let mut header = Vec::with_capacity(1536);
        if let Some(pax) = pax_data(records, align) {
            let base = full_name.rsplit(|&b| b == b'/').find(|c| !c.is_empty()).unwrap_or(b"entry");
            let xname = [b"PaxHeaders/".as_slice(), &base[..base.len().min(80)]].concat();
            let x = Ustar {
                name: &xname,
                mode: 0o644,
                size: pax.len() as u64,
                mtime: h.mtime,
                typeflag: b'x',
                ..Default::default()
            };
            header.extend_from_slice(&x.to_block());
            header.extend_from_slice(&pax);
            header.resize(round_up(header.len() as u64, BLOCK) as usize, 0);
        }
        header.extend_from_slice(&h.to_block());
        self.emit(&header)?;
        self.out.file_begin(full_name, h.size).map_err(DiffError::Output)?;
        if let Some(f) = data {
            self.out.file_from(f, 0, h.size).map_err(DiffError::Output)?;
            self.pos += h.size;
        }
        self.out.file_end().map_err(DiffError::Output)?;
        let pad = round_up(h.size, BLOCK) - h.size;
        if pad > 0 {
            self.emit(&vec![0u8; pad as usize])?;
        }
        self.stats.entries += 1;
        Ok(())
    }

    fn whiteout(&mut self, name: &[u8]) -> Result<(), DiffError> {
        let h = Ustar { name, mode: 0o644, typeflag: b'0', ..Default::default() };
        self.stats.whiteouts += 1;
        self.entry(h, name, Vec::new(), None)
    }

    fn object(
        &mut self,
        e: &Entry,
        tar_path: &[u8],
        hardlink_to: Option<&[u8]>,
        source: Option<&Source>,
    ) -> Result<(), DiffError> {
        let mut name = tar_path.to_vec();
        if e.kind == EntryKind::Dir {
            name.push(b'/');
        }
        let (typeflag, link): (u8, &[u8]) = match (hardlink_to, e.kind) {
            (Some(t), _) => (b'1', t),
            (None, EntryKind::File) => (b'0', b""),
            (None, EntryKind::Hardlink) => (b'1', e.link_target.as_deref().unwrap_or_default()),
            (None, EntryKind::Symlink) => (b'2', e.link_target.as_deref().unwrap_or_default()),
            (None, EntryKind::CharDevice) => (b'3', b""),
            (None, EntryKind::BlockDevice) => (b'4', b""),
            (None, EntryKind::Dir) => (b'5', b""),
            (None, EntryKind::Fifo) => (b'6', b""),
        };
        let size = if typeflag == b'0' { e.size } else { 0 };
        let file = if typeflag == b'0' && size > 0 {
            let src = source.ok_or_else(|| DiffError::NoSource { path: e.path.to_string() })?;
            Some(open_source(src, size)?)
        } else {
            None
        };
        let mut records = Vec::new();
        if link.len() > 100 {
            records.extend(pax_record("linkpath", link));
        }
        if size > MAX_OCTAL_12 {
            records.extend(pax_record("size", size.to_string().as_bytes()));
        }
        if u64::from(e.uid) > MAX_OCTAL_8 {
            records.extend(pax_record("uid", e.uid.to_string().as_bytes()));
        }
        if u64::from(e.gid) > MAX_OCTAL_8 {
            records.extend(pax_record("gid", e.gid.to_string().as_bytes()));
        }
        let secs = e.mtime.secs;
        if e.mtime.nanos != 0 || secs < 0 || secs as u64 > MAX_OCTAL_12 {
            records.extend(pax_record("mtime", &pax_time(secs, e.mtime.nanos)));
        }
        for (k, v) in &e.xattrs {
            if !is_overlay_xattr(k) {
                records.extend(pax_record(&format!("SCHILY.xattr.{k}"), v));
            }
        }
        let h = Ustar {
            name: &name,
            mode: e.mode,
            uid: u64::from(e.uid),
            gid: u64::from(e.gid),
            size,
            mtime: secs.max(0) as u64,
            typeflag,
            linkname: link,
            dev_major: u64::from(e.dev_major),
            dev_minor: u64::from(e.dev_minor),
        };
        self.entry(h, &name, records, file.as_ref())
    }
}

/// Opens a data source (beneath its tree, no symlink followed, the inode the differ saw) and
/// checks it still has the size the changeset recorded (a file that changed since the diff
/// would corrupt the stream).
fn open_source(src: &Source, size: u64) -> Result<File, DiffError> {
    let path = src.display();
    let f = src.open().map_err(io_err(&path))?;
    let md = f.metadata().map_err(io_err(&path))?;
    if md.len() != size {
        return Err(DiffError::SourceChanged { path, expected: size, found: md.len() });
    }
    Ok(f)
}
