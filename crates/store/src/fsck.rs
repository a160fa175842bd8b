//! `strata fsck`: is the store consistent?
//!
//! Opened for writing, so crash recovery has already run (its repairs are reported, they
//! are not errors). Then:
//! - every image's layers have records and directories; every container's too;
//! - every layer: its directory, `diff/` and tar-split exist; its files match their
//!   records (type, mode, ownership, size, link target, and — for a sample, or all with
//!   `--full` — content digest); with `--full` the tar stream rebuilt from tar-split and
//!   files has the layer's DiffID;
//! - every index location (a sample, or all with `--full`) names an existing layer and file,
//!   lies inside it, and the bytes there have the key's digest;
//! - no layer directory without a record, no staging left by dead operations.

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::time::Instant;

use strata_chunker::{HashOptions, digest_path};
use strata_index::{Key, LayerNum};
use strata_types::{EntryKind, Sha256Digest};

use crate::paths::{LAYER_DIFF, LAYER_TAR_SPLIT};
use crate::records::{FileRecord, Marker};
use crate::{Store, StoreError};

/// Index locations verified when not `--full` (spread over the key space).
const LOC_SAMPLE: u64 = 2000;
/// Files per layer whose content is hashed when not `--full`.
const FILE_SAMPLE: usize = 64;

/// The `--json` report.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct FsckReport {
    pub ok: bool,
    pub errors: Vec<String>,
    pub images: u64,
    pub layers: u64,
    pub files_checked: u64,
    pub files_hashed: u64,
    pub index_entries_checked: u64,
    /// What recovery repaired when the store was opened (not errors).
    pub recovered: crate::recover::Recovered,
    pub full: bool,
    pub seconds: f64,
}

impl Store {
    pub fn fsck(&self, full: bool) -> Result<FsckReport, StoreError> {
        let start = Instant::now();
        let mut r = FsckReport { full, recovered: self.recovered, ..Default::default() };
        let layers = self.layers()?;
        let by_id: HashMap<_, _> = layers.iter().map(|l| (l.id, l)).collect();
        let images = self.images()?;
        r.images = images.len() as u64;
        r.layers = layers.len() as u64;
        for img in &images {
            for l in &img.layers {
                if !by_id.contains_key(l) {
                    r.errors.push(format!("image {}: layer {l} has no record", img.name));
                }
            }
            if Sha256Digest::of(img.config.as_bytes()) != img.config_digest {
                r.errors.push(format!("image {}: config does not have digest {}", img.name, img.config_digest));
            }
        }
        for c in self.containers()? {
            for l in &c.layers {
                if !by_id.contains_key(l) {
                    r.errors.push(format!("container {}: layer {l} has no record", c.name));
                }
            }
            if !self.container_dirs(&c.name).upper.is_dir() {
                r.errors.push(format!("container {}: upper directory is missing", c.name));
            }
        }
        let mut nums = HashMap::new();
        for l in &layers {
            nums.insert(l.num, l);
            if self.layer_id_of(LayerNum(l.num))? != Some(l.id) {
                r.errors.push(format!("layer {}: number {} does not map back to it", l.id, l.num));
            }
            self.fsck_layer(l, full, &mut r)?;
        }
        self.fsck_index(&nums, full, &mut r)?;
        let stale = crate::staging::count_stale(&self.paths)?;
        if stale > 0 {
            r.errors.push(format!("{stale} staging directories of dead operations"));
        }
        r.ok = r.errors.is_empty();
        r.seconds = start.elapsed().as_secs_f64();
        Ok(r)
    }

    fn fsck_layer(&self, l: &crate::records::LayerRecord, full: bool, r: &mut FsckReport) -> Result<(), StoreError> {
        let root = self.paths.layer(&l.id);
        let diff = root.join(LAYER_DIFF);
        if !diff.is_dir() || !root.join(LAYER_TAR_SPLIT).is_file() {
            r.errors.push(format!("layer {}: directory, diff/ or tar-split is missing", l.id));
            return Ok(());
        }
        let files = match self.layer_files(l) {
            Ok(f) => f,
            Err(e) => {
                r.errors.push(format!("layer {}: {e}", l.id));
                return Ok(());
            }
        };
        if files.len() as u64 != l.entries {
            r.errors.push(format!("layer {}: {} file records, the layer record says {}", l.id, files.len(), l.entries));
        }
        let regular: Vec<usize> = (0..files.len())
            .filter(|&i| files[i].marker == Marker::None && files[i].entry.kind == EntryKind::File)
            .collect();
        let step = if full { 1 } else { (regular.len() / FILE_SAMPLE).max(1) };
        let hash: std::collections::HashSet<usize> = regular.iter().step_by(step).copied().collect();
        for (i, f) in files.iter().enumerate() {
            r.files_checked += 1;
            if let Some(e) = check_file(&diff, f, hash.contains(&i)) {
                r.errors.push(format!("layer {}: {}: {e}", l.id, f.entry.path));
            } else if hash.contains(&i) {
                r.files_hashed += 1;
            }
        }
        if full {
            let mut sink = strata_layer::tarsplit::DiffIdOut::default();
            if let Err(e) = crate::export::regenerate_layer(&root, &l.id, &mut sink) {
                r.errors.push(e.to_string());
            }
        }
        Ok(())
    }

    fn fsck_index(
        &self,
        nums: &HashMap<u32, &crate::records::LayerRecord>,
        full: bool,
        r: &mut FsckReport,
    ) -> Result<(), StoreError> {
        let total = self.index().stats()?.loc_keys.max(1);
        let every = if full { 1 } else { (total / LOC_SAMPLE).max(1) };
        let mut n = 0u64;
        let mut resolver = crate::resolve::Resolver::new(self.index(), &self.paths);
        let mut errors = Vec::new();
        let mut checked = 0;
        self.index().for_each_loc(|key, locs| {
            n += 1;
            for loc in locs {
                let Some(layer) = nums.get(&loc.layer.0) else {
                    errors.push(format!("index {key:?}: points at layer number {}, which does not exist", loc.layer.0));
                    continue;
                };
                if u64::from(loc.file) >= layer.entries {
                    errors.push(format!(
                        "index {key:?}: points at file {} of layer {}, which has {}",
                        loc.file, layer.id, layer.entries
                    ));
                    continue;
                }
                if !n.is_multiple_of(every) {
                    continue;
                }
                checked += 1;
                let Some(path) = resolver.path(loc) else {
                    errors
                        .push(format!("index {key:?}: file {} of layer {} is not a regular file", loc.file, layer.id));
                    continue;
                };
                if let Err(e) = check_range(&path, loc.offset, loc.len, &key) {
                    errors.push(format!("index {key:?}: {}: {e}", path.display()));
                }
            }
            errors.len() < 1000
        })?;
        r.index_entries_checked = checked;
        r.errors.extend(errors);
        Ok(())
    }
}

/// Compares a layer file with its record; hashes content when `hash`.
fn check_file(diff: &std::path::Path, f: &FileRecord, hash: bool) -> Option<String> {
    let p = diff.join(f.entry.path.as_at_path());
    let m = match fs::symlink_metadata(&p) {
        Ok(m) => m,
        Err(e) => return Some(format!("missing ({e})")),
    };
    let e = &f.entry;
    match f.marker {
        Marker::Whiteout => {
            let ok = (m.mode() & 0o170000 == 0o020000 && m.rdev() == 0) || m.mode() & 0o170000 == 0o040000;
            return (!ok).then(|| "whiteout is not a 0/0 character device".to_owned());
        }
        Marker::Opaque => {
            let v = xattr::get(&p, "trusted.overlay.opaque")
                .ok()
                .flatten()
                .or_else(|| xattr::get(&p, "user.overlay.opaque").ok().flatten());
            return (v.as_deref() != Some(b"y")).then(|| "opaque directory has no overlay.opaque=y".to_owned());
        }
        Marker::None => {}
    }
    let want = if e.kind == EntryKind::Hardlink { EntryKind::File } else { e.kind };
    if EntryKind::from_mode(m.mode()) != Some(want) {
        return Some(format!("is a {:?}, the record says {:?}", EntryKind::from_mode(m.mode()), e.kind));
    }
    if e.kind == EntryKind::Hardlink {
        return None;
    }
    if e.kind != EntryKind::Dir && m.mode() & 0o7777 != e.mode & 0o7777 {
        return Some(format!("mode {:o}, the record says {:o}", m.mode() & 0o7777, e.mode & 0o7777));
    }
    if nix::unistd::geteuid().is_root() && (m.uid() != e.uid || m.gid() != e.gid) {
        return Some(format!("owner {}:{}, the record says {}:{}", m.uid(), m.gid(), e.uid, e.gid));
    }
    if e.kind == EntryKind::File {
        if m.len() != e.size {
            return Some(format!("{} bytes, the record says {}", m.len(), e.size));
        }
        if hash && let Some(b3) = f.blake3 {
            match digest_path(&p, HashOptions::default()) {
                Ok(d) if d.blake3 == b3 => {}
                Ok(d) => return Some(format!("content has digest {}, the record says {b3}", d.blake3)),
                Err(err) => return Some(format!("cannot read: {err}")),
            }
        }
    }
    if e.kind == EntryKind::Symlink {
        let t = fs::read_link(&p).map(|t| t.into_os_string().into_encoded_bytes()).unwrap_or_default();
        if Some(&t) != e.link_target.as_ref() {
            return Some("symlink target differs from the record".to_owned());
        }
    }
    None
}

fn check_range(path: &std::path::Path, offset: u64, len: u64, key: &Key) -> Result<(), String> {
    let f = File::open(path).map_err(|e| e.to_string())?;
    let size = f.metadata().map_err(|e| e.to_string())?.len();
    if offset.checked_add(len).is_none_or(|end| end > size) {
        return Err(format!("range {offset}+{len} is past the end ({size} bytes)"));
    }
    // Streamed in bounded pieces: a whole file can be gigabytes.
    let mut blake3 = strata_types::Blake3Hasher::new();
    let mut sha = strata_types::Sha256Hasher::new();
    let mut buf = vec![0u8; (len as usize).min(1 << 20)];
    let mut pos = 0u64;
    while pos < len {
        let n = ((len - pos) as usize).min(buf.len());
        f.read_exact_at(&mut buf[..n], offset + pos).map_err(|e| e.to_string())?;
        match key {
            Key::Chunk(_) | Key::File(_) => {
                blake3.update(&buf[..n]);
            }
            Key::FileSha256(_) | Key::ChunkSha256(_) => sha.update(&buf[..n]),
        }
        pos += n as u64;
    }
    let ok = match key {
        Key::Chunk(d) | Key::File(d) => blake3.finalize() == *d,
        Key::FileSha256(d) | Key::ChunkSha256(d) => sha.finalize() == *d,
    };
    if ok { Ok(()) } else { Err("bytes do not have the key's digest".into()) }
}
