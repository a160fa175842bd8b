//! Publishing new layers and removing old ones, in an order that any crash leaves
//! recoverable (see `docs/on-disk-format.md`, "Publication order").
//!
//! Publishing: (1) the worker writes everything in staging — the layer tree, its tar-split,
//! its file records (`records.bin`) and index locations (`locs.bin`) — and makes it durable
//! with `syncfs` ([`StagedLayer::seal`]); then, in the owner's `publish` transaction,
//! (2) each layer directory is renamed into `layers/` and the directory is fsynced, and
//! (3) one index batch adds the layer records, file records, chunk locations and the image
//! record, synced. The batch is the commit point: before it, recovery deletes the renamed
//! directories as orphans; after it, everything is visible at once.
//!
//! Removing (inside a transaction): (1) one index batch deletes the records and locations;
//! (2) the directories are renamed into the caller's staging directory, which the caller
//! deletes afterwards, outside the owner's mutex. A crash between the two leaves orphans that
//! recovery deletes; a layer directory is never deleted under its own name, so a layer
//! published again at the same moment cannot lose files to the removal.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use strata_index::{Batch, Key, LayerNum, Loc, Table};
use strata_types::{ImageName, LayerId};

use crate::error::IoContext;
use crate::files::{fsync_dir, remove_tree};
use crate::owner::{Owner, RootPath};
use crate::paths::{LAYER_INDEX_KEYS, LAYER_LOCS, LAYER_RECORDS, StorePaths};
use crate::records::{FileRecord, ImageRecord, LayerRecord};
use crate::{Store, StoreError};

/// An index entry a new layer adds: `key`'s bytes are at `offset..offset+len` of file `file`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewLoc {
    pub key: Key,
    pub file: u32,
    pub offset: u64,
    pub len: u64,
}

/// Bytes of one entry of `locs.bin`: key, file number (u32 BE), offset, length (u64 BE).
const LOC_ENTRY: usize = Key::LEN + 4 + 8 + 8;

impl NewLoc {
    fn encode(&self) -> [u8; LOC_ENTRY] {
        let mut b = [0u8; LOC_ENTRY];
        b[..Key::LEN].copy_from_slice(&self.key.encode());
        b[Key::LEN..Key::LEN + 4].copy_from_slice(&self.file.to_be_bytes());
        b[Key::LEN + 4..Key::LEN + 12].copy_from_slice(&self.offset.to_be_bytes());
        b[Key::LEN + 12..].copy_from_slice(&self.len.to_be_bytes());
        b
    }

    fn decode(b: &[u8; LOC_ENTRY]) -> Option<NewLoc> {
        Some(NewLoc {
            key: Key::decode(&b[..Key::LEN])?,
            file: u32::from_be_bytes(b[Key::LEN..Key::LEN + 4].try_into().ok()?),
            offset: u64::from_be_bytes(b[Key::LEN + 4..Key::LEN + 12].try_into().ok()?),
            len: u64::from_be_bytes(b[Key::LEN + 12..].try_into().ok()?),
        })
    }
}

/// A layer completely built in a staging directory.
#[derive(Debug)]
pub struct StagedLayer {
    pub id: LayerId,
    /// The directory holding `diff/` and `tar-split.json.zst`.
    pub dir: PathBuf,
    /// One record per tar entry, in stream order: the position is the file number.
    pub files: Vec<FileRecord>,
    pub locs: Vec<NewLoc>,
    /// Filled in except `num`, which publishing assigns.
    pub record: LayerRecord,
}

/// A sealed staged layer, as the `publish` transaction names it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PublishLayer {
    pub dir: RootPath,
    pub record: LayerRecord,
}

/// What to do with the image record of a `publish`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PublishImage {
    pub record: ImageRecord,
    /// Replace an image of that name (`pull`); otherwise an existing name is an error.
    pub replace: bool,
}

/// The `publish` transaction: layers (those not yet in the store are added) and an image.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PublishTx {
    pub layers: Vec<PublishLayer>,
    pub image: Option<PublishImage>,
    /// Where the directories of layers the replaced image alone used go.
    pub trash: Option<RootPath>,
}

/// What a `publish` did.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Published {
    /// The layers added (those already in the store are not).
    pub added: Vec<LayerId>,
    /// Layers of a replaced image that nothing else used, removed.
    pub removed: Vec<LayerId>,
}

impl StagedLayer {
    /// Writes the layer's file records and index locations beside its tree and makes the
    /// whole staging directory durable: what the `publish` transaction needs, on disk.
    pub(crate) fn seal(
        self,
        paths: &StorePaths,
        staging: &crate::staging::Staging,
    ) -> Result<PublishLayer, StoreError> {
        let rp = self.dir.join(LAYER_RECORDS);
        let mut w = BufWriter::new(File::create(&rp).at(&rp)?);
        for f in &self.files {
            let enc = f.encode();
            w.write_all(&(enc.len() as u32).to_be_bytes()).at(&rp)?;
            w.write_all(&enc).at(&rp)?;
        }
        w.into_inner().map_err(|e| StoreError::io(&rp, e.into_error()))?;
        let lp = self.dir.join(LAYER_LOCS);
        let mut w = BufWriter::new(File::create(&lp).at(&lp)?);
        for l in &self.locs {
            w.write_all(&l.encode()).at(&lp)?;
        }
        w.into_inner().map_err(|e| StoreError::io(&lp, e.into_error()))?;
        staging.sync()?;
        let mut record = self.record;
        record.entries = self.files.len() as u64;
        Ok(PublishLayer { dir: RootPath::of(paths.root(), &self.dir)?, record })
    }
}

/// Reads `records.bin`: one file record per tar entry, in stream order.
fn read_records(dir: &Path, mut each: impl FnMut(u32, &[u8])) -> Result<u32, StoreError> {
    let p = dir.join(LAYER_RECORDS);
    let mut r = BufReader::new(File::open(&p).at(&p)?);
    let mut n = 0u32;
    let mut len = [0u8; 4];
    let mut buf = Vec::new();
    loop {
        match r.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(n),
            Err(e) => return Err(StoreError::io(&p, e)),
        }
        buf.resize(u32::from_be_bytes(len) as usize, 0);
        r.read_exact(&mut buf).at(&p)?;
        each(n, &buf);
        n += 1;
    }
}

/// The index entries a layer added, from `locs.bin` (or, for layers of earlier versions,
/// the keys of `index-keys`, without positions).
fn read_locs(dir: &Path) -> Result<Vec<NewLoc>, StoreError> {
    let p = dir.join(LAYER_LOCS);
    let bytes = match fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return read_old_index_keys(dir),
        Err(e) => return Err(StoreError::io(&p, e)),
    };
    if bytes.len() % LOC_ENTRY != 0 {
        return Err(StoreError::Corrupt(format!(
            "{}: {} bytes is not a whole number of entries",
            p.display(),
            bytes.len()
        )));
    }
    bytes
        .chunks_exact(LOC_ENTRY)
        .map(|c| {
            NewLoc::decode(c.try_into().expect("exact chunk"))
                .ok_or_else(|| StoreError::Corrupt(format!("{}: bad entry", p.display())))
        })
        .collect()
}

fn read_old_index_keys(dir: &Path) -> Result<Vec<NewLoc>, StoreError> {
    let p = dir.join(LAYER_INDEX_KEYS);
    let bytes = match fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io(&p, e)),
    };
    bytes
        .chunks(Key::LEN)
        .map(|c| {
            Key::decode(c)
                .map(|key| NewLoc { key, file: 0, offset: 0, len: 0 })
                .ok_or_else(|| StoreError::Corrupt(format!("{}: bad key", p.display())))
        })
        .collect()
}

/// The index keys a published layer added (read back for its removal).
pub(crate) fn layer_keys(paths: &StorePaths, id: &LayerId) -> Result<Vec<Key>, StoreError> {
    let mut keys: Vec<Key> = read_locs(&paths.layer(id))?.into_iter().map(|l| l.key).collect();
    keys.sort_unstable();
    keys.dedup();
    Ok(keys)
}

impl Owner {
    /// The `publish` transaction.
    pub(crate) fn publish(&self, tx: PublishTx) -> Result<Published, StoreError> {
        let root = self.paths.root();
        let mut fresh = Vec::new();
        let mut seen = HashSet::new();
        for l in &tx.layers {
            if self.layer(&l.record.id)?.is_none() && seen.insert(l.record.id) {
                fresh.push(l);
            }
        }
        let old = match &tx.image {
            Some(img) => match crate::store::image(&self.index, &img.record.name) {
                // This very record (the same request, sent again after its owner died).
                Ok(old) if old == img.record => {
                    return Ok(Published { added: Vec::new(), removed: Vec::new() });
                }
                Ok(old) if !img.replace => return Err(StoreError::ImageExists(old.name)),
                Ok(old) => Some(old),
                Err(StoreError::NoSuchImage(_)) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        if let Some(img) = &tx.image {
            for l in &img.record.layers {
                if !seen.contains(l) && self.layer(l)?.is_none() {
                    return Err(StoreError::MissingLayer(*l));
                }
            }
        }
        let result = (|| {
            for l in &fresh {
                let dst = self.paths.layer(&l.record.id);
                if dst.exists() {
                    // No record (checked above), so it is an orphan of a failed publish.
                    remove_tree(&dst)?;
                }
                let src = l.dir.resolve(root);
                fs::rename(&src, &dst).at(&dst)?;
            }
            if !fresh.is_empty() {
                fsync_dir(&self.paths.layers())?;
            }
            let mut b = self.index.batch();
            for l in &fresh {
                let num = self.index.next_layer_num(&mut b)?;
                let dir = self.paths.layer(&l.record.id);
                let mut rec = l.record.clone();
                rec.num = num.0;
                let files = read_records(&dir, |n, bytes| self.index.put_file(&mut b, num, n, bytes))?;
                if u64::from(files) != rec.entries {
                    return Err(StoreError::Corrupt(format!(
                        "layer {}: {files} file records staged, the record says {}",
                        rec.id, rec.entries
                    )));
                }
                for nl in read_locs(&dir)? {
                    b.add_loc(nl.key, Loc { layer: num, file: nl.file, offset: nl.offset, len: nl.len });
                }
                let json = serde_json::to_vec(&rec).expect("layer record serializes");
                self.index.put(&mut b, Table::Layers, rec.id.0.as_bytes(), &json);
                self.index.put(&mut b, Table::LayerNums, &num.0.to_be_bytes(), rec.id.0.as_bytes());
            }
            if let Some(img) = &tx.image {
                let json = serde_json::to_vec(&img.record).expect("image record serializes");
                self.index.put(&mut b, Table::Images, img.record.name.as_str().as_bytes(), &json);
            }
            self.index.commit(b)?;
            Ok(())
        })();
        // On an error, renamed directories are left in place: a failed commit may still be in
        // the index's log and come back when it is next opened, and then they must be there;
        // if it does not, recovery removes them as orphans (no record).
        result?;
        let added = fresh.iter().map(|l| l.record.id).collect();
        // A replaced image's layers that nothing uses any more go with it.
        let mut removed = Vec::new();
        if let (Some(old), Some(img), Some(trash)) = (&old, &tx.image, &tx.trash) {
            let live = self.live_layers(Some(&img.record.name), None)?;
            let mut dead: Vec<LayerId> =
                old.layers.iter().filter(|l| !live.contains(l) && !img.record.layers.contains(l)).copied().collect();
            dead.sort();
            dead.dedup();
            self.remove_layers(&dead, trash, |_| {})?;
            removed = dead;
        }
        Ok(Published { added, removed })
    }

    /// Layers that must stay: those of every image (but `except_image`), container and
    /// containerd snapshot, and those pinned by live operations (but the one whose pin file
    /// is `except_pins`).
    pub(crate) fn live_layers(
        &self,
        except_image: Option<&ImageName>,
        except_pins: Option<&RootPath>,
    ) -> Result<HashSet<LayerId>, StoreError> {
        let mut live = crate::pins::pinned(&self.paths, except_pins)?;
        for img in crate::store::images(&self.index)? {
            if Some(&img.name) != except_image {
                live.extend(img.layers);
            }
        }
        for c in crate::store::containers(&self.index)? {
            live.extend(c.layers);
        }
        Ok(live)
    }

    /// Removes layers (records, file records, index locations in one batch, with whatever
    /// else `extra` adds), then renames their directories into `trash` for the caller to
    /// delete. The caller has checked that nothing references them. Returns the index
    /// locations removed.
    pub(crate) fn remove_layers(
        &self,
        ids: &[LayerId],
        trash: &RootPath,
        extra: impl FnOnce(&mut Batch),
    ) -> Result<u64, StoreError> {
        let mut b = self.index.batch();
        let mut recs = Vec::new();
        let mut locs = 0u64;
        for id in ids {
            let Some(rec) = self.layer(id)? else { continue };
            let num = LayerNum(rec.num);
            for key in layer_keys(&self.paths, id)? {
                b.remove_layer_loc(key, num);
                locs += 1;
            }
            self.index.delete_files(&mut b, num);
            self.index.delete(&mut b, Table::Layers, id.0.as_bytes());
            self.index.delete(&mut b, Table::LayerNums, &num.0.to_be_bytes());
            recs.push(rec);
        }
        extra(&mut b);
        self.index.commit(b)?;
        let trash = trash.resolve(self.paths.root());
        for rec in recs {
            let d = self.paths.layer(&rec.id);
            if d.exists() {
                let to = trash.join(rec.id.dir_name());
                fs::rename(&d, &to).at(&to)?;
            }
        }
        Ok(locs)
    }
}

impl Store {
    /// Reads the file records of a layer, in stream order.
    pub fn layer_files(&self, rec: &LayerRecord) -> Result<Vec<FileRecord>, StoreError> {
        let mut out = Vec::with_capacity(rec.entries as usize);
        let mut err = None;
        self.index().for_each_file(LayerNum(rec.num), |n, v| {
            if n as usize != out.len() {
                err = Some(StoreError::Corrupt(format!("layer {}: file record {n} out of sequence", rec.id)));
                return false;
            }
            match FileRecord::decode(v) {
                Ok(r) => {
                    out.push(r);
                    true
                }
                Err(e) => {
                    err = Some(StoreError::Corrupt(format!("layer {}: {e}", rec.id)));
                    false
                }
            }
        })?;
        match err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loc_entries_round_trip() {
        let l = NewLoc { key: Key::Chunk(strata_types::Blake3Digest::of(b"x")), file: 7, offset: 1 << 40, len: 65536 };
        assert_eq!(NewLoc::decode(&l.encode()), Some(l));
    }
}
