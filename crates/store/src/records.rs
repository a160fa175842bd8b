//! Records the store keeps in the index (JSON for the few large-grained records, a compact
//! binary encoding for the per-file records, of which there are millions).
//!
//! Pure: nothing else of this crate is used here, because the fuzz targets compile this file
//! on its own (`fuzz/fuzz_targets/store_records.rs`).

use serde::{Deserialize, Serialize};
use strata_types::{Blake3Digest, Entry, EntryKind, ImageName, LayerId, RelPath, Sha256Digest, Timestamp};

/// How a layer came into the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerOrigin {
    Import,
    Pull,
    Commit,
    Squash,
    Diff,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub id: LayerId,
    /// The layer's number in the index (file records and locations use it).
    pub num: u32,
    /// Seconds since the epoch.
    pub created: u64,
    pub origin: LayerOrigin,
    /// Tar entries (including whiteouts).
    pub entries: u64,
    /// Sum of regular file sizes.
    pub logical_bytes: u64,
    /// Size of the uncompressed tar stream.
    pub tar_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub name: ImageName,
    /// Bottom layer first (the order of the config's diff_ids).
    pub layers: Vec<LayerId>,
    /// The image configuration, verbatim (its bytes are the config blob on export).
    pub config: String,
    pub config_digest: Sha256Digest,
    pub created: u64,
    /// Where it came from: `oci:PATH:TAG`, a registry reference, `commit of NAME`...
    pub source: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub name: ImageName,
    pub image: ImageName,
    /// The image's layers when the container was created (they stay alive while it does).
    pub layers: Vec<LayerId>,
    pub created: u64,
}

/// Marks a record as describing a whiteout or an opaque directory (the tar's `.wh.NAME`
/// and `.wh..wh..opq` entries) rather than a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker {
    None,
    /// `path` is deleted from lower layers.
    Whiteout,
    /// `path` (a directory) hides everything below it in lower layers.
    Opaque,
}

/// One entry of a layer, as stored per file in the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRecord {
    pub entry: Entry,
    pub marker: Marker,
    /// Digests of a regular file's content.
    pub blake3: Option<Blake3Digest>,
    pub sha256: Option<Sha256Digest>,
}

#[derive(Debug, thiserror::Error)]
#[error("file record is corrupt: {0}")]
pub struct RecordError(pub &'static str);

const F_BLAKE3: u8 = 0x20;
const F_SHA256: u8 = 0x40;

fn kind_code(k: EntryKind) -> u8 {
    match k {
        EntryKind::File => 0,
        EntryKind::Dir => 1,
        EntryKind::Symlink => 2,
        EntryKind::Hardlink => 3,
        EntryKind::CharDevice => 4,
        EntryKind::BlockDevice => 5,
        EntryKind::Fifo => 6,
    }
}

fn kind_from(c: u8) -> Option<EntryKind> {
    Some(match c {
        0 => EntryKind::File,
        1 => EntryKind::Dir,
        2 => EntryKind::Symlink,
        3 => EntryKind::Hardlink,
        4 => EntryKind::CharDevice,
        5 => EntryKind::BlockDevice,
        6 => EntryKind::Fifo,
        _ => return None,
    })
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, RecordError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.0.split_first().ok_or(RecordError("truncated number"))?;
            self.0 = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(RecordError("overlong number"))
    }
    fn u32(&mut self) -> Result<u32, RecordError> {
        u32::try_from(self.varint()?).map_err(|_| RecordError("number out of range"))
    }
    fn bytes(&mut self) -> Result<&'a [u8], RecordError> {
        let n = self.varint()? as usize;
        if n > self.0.len() {
            return Err(RecordError("truncated bytes"));
        }
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(b)
    }
    fn array32(&mut self) -> Result<[u8; 32], RecordError> {
        if self.0.len() < 32 {
            return Err(RecordError("truncated digest"));
        }
        let (b, rest) = self.0.split_at(32);
        self.0 = rest;
        Ok(b.try_into().expect("32 bytes"))
    }
}

impl FileRecord {
    pub fn encode(&self) -> Vec<u8> {
        let e = &self.entry;
        let mut out = Vec::with_capacity(64 + e.path.as_bytes().len());
        let marker = match self.marker {
            Marker::None => 0,
            Marker::Whiteout => 1,
            Marker::Opaque => 2,
        };
        let flags = kind_code(e.kind)
            | (marker << 3)
            | if self.blake3.is_some() { F_BLAKE3 } else { 0 }
            | if self.sha256.is_some() { F_SHA256 } else { 0 };
        out.push(flags);
        put_bytes(&mut out, e.path.as_bytes());
        put_varint(&mut out, u64::from(e.mode));
        put_varint(&mut out, u64::from(e.uid));
        put_varint(&mut out, u64::from(e.gid));
        put_varint(&mut out, ((e.mtime.secs << 1) ^ (e.mtime.secs >> 63)) as u64);
        put_varint(&mut out, u64::from(e.mtime.nanos));
        put_varint(&mut out, e.size);
        put_bytes(&mut out, e.link_target.as_deref().unwrap_or_default());
        put_varint(&mut out, u64::from(e.link_target.is_some()));
        put_varint(&mut out, u64::from(e.dev_major));
        put_varint(&mut out, u64::from(e.dev_minor));
        put_varint(&mut out, e.xattrs.len() as u64);
        for (k, v) in &e.xattrs {
            put_bytes(&mut out, k.as_bytes());
            put_bytes(&mut out, v);
        }
        if let Some(d) = &self.blake3 {
            out.extend_from_slice(d.as_bytes());
        }
        if let Some(d) = &self.sha256 {
            out.extend_from_slice(d.as_bytes());
        }
        out
    }

    pub fn decode(b: &[u8]) -> Result<FileRecord, RecordError> {
        let mut r = Reader(b);
        let (&flags, rest) = b.split_first().ok_or(RecordError("empty"))?;
        r.0 = rest;
        let kind = kind_from(flags & 0x7).ok_or(RecordError("unknown kind"))?;
        let marker = match (flags >> 3) & 0x3 {
            0 => Marker::None,
            1 => Marker::Whiteout,
            2 => Marker::Opaque,
            _ => return Err(RecordError("unknown marker")),
        };
        let path = RelPath::new(r.bytes()?).map_err(|_| RecordError("bad path"))?;
        let mut e = Entry::new(path, kind);
        e.mode = r.u32()?;
        e.uid = r.u32()?;
        e.gid = r.u32()?;
        let z = r.varint()?;
        e.mtime = Timestamp::new(((z >> 1) as i64) ^ -((z & 1) as i64), r.u32()?);
        e.size = r.varint()?;
        let target = r.bytes()?.to_vec();
        if r.varint()? == 1 {
            e.link_target = Some(target);
        }
        e.dev_major = r.u32()?;
        e.dev_minor = r.u32()?;
        let n = r.varint()?;
        for _ in 0..n {
            let k = String::from_utf8(r.bytes()?.to_vec()).map_err(|_| RecordError("xattr name"))?;
            let v = r.bytes()?.to_vec();
            e.xattrs.insert(k, v);
        }
        let blake3 = if flags & F_BLAKE3 != 0 { Some(Blake3Digest::from_bytes(r.array32()?)) } else { None };
        let sha256 = if flags & F_SHA256 != 0 { Some(Sha256Digest::from_bytes(r.array32()?)) } else { None };
        if !r.0.is_empty() {
            return Err(RecordError("trailing bytes"));
        }
        Ok(FileRecord { entry: e, marker, blake3, sha256 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_records_round_trip() {
        let mut e = Entry::new(RelPath::new("usr/bin/python3.11").unwrap(), EntryKind::File);
        e.mode = 0o4755;
        e.uid = 1000;
        e.gid = 65534;
        e.mtime = Timestamp::new(-5, 999_999_999);
        e.size = 1 << 40;
        e.xattrs.insert("security.capability".into(), vec![1, 2, 3]);
        let r = FileRecord {
            entry: e,
            marker: Marker::None,
            blake3: Some(Blake3Digest::of(b"x")),
            sha256: Some(Sha256Digest::of(b"x")),
        };
        let enc = r.encode();
        assert_eq!(FileRecord::decode(&enc).unwrap(), r);
        let mut l = Entry::new(RelPath::new("a/b").unwrap(), EntryKind::Symlink);
        l.link_target = Some(b"../../etc".to_vec());
        let r2 = FileRecord { entry: l, marker: Marker::Whiteout, blake3: None, sha256: None };
        assert_eq!(FileRecord::decode(&r2.encode()).unwrap(), r2);
        for cut in 0..enc.len() {
            assert!(FileRecord::decode(&enc[..cut]).is_err(), "truncated at {cut} accepted");
        }
    }
}
