//! Publishing new layers and removing old ones, in an order that any crash leaves
//! recoverable (see `docs/on-disk-format.md`, "Publication order").
//!
//! Publishing: (1) everything is written in staging; (2) `syncfs` makes it durable;
//! (3) each layer directory is renamed into `layers/` and the directory is fsynced;
//! (4) one index batch adds the layer records, file records, chunk locations and the image
//! record, synced. The batch is the commit point: before it, recovery deletes the renamed
//! directories as orphans; after it, everything is visible at once.
//!
//! Removing: (1) one index batch deletes the records and locations; (2) the directories are
//! deleted. A crash between the two leaves orphans that recovery deletes.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use strata_index::{Key, LayerNum, Loc, Table};
use strata_types::LayerId;

use crate::error::IoContext;
use crate::files::{fsync_dir, remove_tree, syncfs};
use crate::paths::{LAYER_INDEX_KEYS, StorePaths};
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

fn write_index_keys(dir: &Path, locs: &[NewLoc]) -> Result<(), StoreError> {
    let p = dir.join(LAYER_INDEX_KEYS);
    let mut w = BufWriter::new(File::create(&p).at(&p)?);
    let mut seen = std::collections::HashSet::with_capacity(locs.len());
    for l in locs {
        if seen.insert(l.key) {
            w.write_all(&l.key.encode()).at(&p)?;
        }
    }
    w.into_inner().map_err(|e| StoreError::io(&p, e.into_error()))?.sync_all().at(&p)
}

/// The index keys a published layer added (read back for its removal).
pub(crate) fn read_index_keys(paths: &StorePaths, id: &LayerId) -> Result<Vec<Key>, StoreError> {
    let p = paths.layer(id).join(LAYER_INDEX_KEYS);
    let f = match File::open(&p) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io(&p, e)),
    };
    let mut r = BufReader::new(f);
    let mut out = Vec::new();
    let mut buf = [0u8; Key::LEN];
    loop {
        if r.fill_buf().at(&p)?.is_empty() {
            break;
        }
        std::io::Read::read_exact(&mut r, &mut buf).at(&p)?;
        out.push(Key::decode(&buf).ok_or_else(|| StoreError::Corrupt(format!("{}: bad key", p.display())))?);
    }
    Ok(out)
}

impl Store {
    /// Publishes `layers` (skipping any already in the store) and, optionally, an image
    /// record, atomically. Returns the layer ids in input order.
    pub(crate) fn publish(
        &self,
        layers: Vec<StagedLayer>,
        image: Option<&ImageRecord>,
    ) -> Result<Vec<LayerId>, StoreError> {
        self.require_write()?;
        let ids: Vec<LayerId> = layers.iter().map(|l| l.id).collect();
        let mut fresh = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for l in layers {
            if self.layer(&l.id)?.is_none() && seen.insert(l.id) {
                fresh.push(l);
            }
        }
        for l in &fresh {
            write_index_keys(&l.dir, &l.locs)?;
        }
        if let Some(first) = fresh.first() {
            syncfs(&first.dir)?;
        }
        let mut renamed: Vec<PathBuf> = Vec::new();
        let result = (|| {
            for l in &fresh {
                let dst = self.paths.layer(&l.id);
                if dst.exists() {
                    // No record (checked above), so it is an orphan of a crashed operation.
                    remove_tree(&dst)?;
                }
                fs::rename(&l.dir, &dst).at(&dst)?;
                renamed.push(dst);
            }
            fsync_dir(&self.paths.layers())?;
            let mut b = self.index.batch();
            for l in &fresh {
                let num = self.index.next_layer_num(&mut b)?;
                let mut rec = l.record.clone();
                rec.num = num.0;
                let json = serde_json::to_vec(&rec).expect("layer record serializes");
                self.index.put(&mut b, Table::Layers, l.id.0.as_bytes(), &json);
                self.index.put(&mut b, Table::LayerNums, &num.0.to_be_bytes(), l.id.0.as_bytes());
                for (i, f) in l.files.iter().enumerate() {
                    self.index.put_file(&mut b, num, i as u32, &f.encode());
                }
                for nl in &l.locs {
                    b.add_loc(nl.key, Loc { layer: num, file: nl.file, offset: nl.offset, len: nl.len });
                }
            }
            if let Some(img) = image {
                let json = serde_json::to_vec(img).expect("image record serializes");
                self.index.put(&mut b, Table::Images, img.name.as_str().as_bytes(), &json);
            }
            self.index.commit(b)?;
            Ok(())
        })();
        if let Err(e) = result {
            for d in renamed {
                let _ = remove_tree(&d);
            }
            return Err(e);
        }
        Ok(ids)
    }

    /// Removes layers (records, file records, index locations, then directories). The
    /// caller has checked that nothing references them. `extra` lets the caller delete
    /// other records (an image) in the same batch. Returns the index locations removed.
    pub(crate) fn remove_layers(
        &self,
        ids: &[LayerId],
        extra: impl FnOnce(&mut strata_index::Batch),
    ) -> Result<u64, StoreError> {
        self.require_write()?;
        let mut b = self.index.batch();
        let mut recs = Vec::new();
        let mut locs = 0u64;
        for id in ids {
            let Some(rec) = self.layer(id)? else { continue };
            let num = LayerNum(rec.num);
            for key in read_index_keys(&self.paths, id)? {
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
        for rec in recs {
            let d = self.paths.layer(&rec.id);
            if d.exists() {
                remove_tree(&d)?;
            }
        }
        Ok(locs)
    }

    /// Layers referenced by any image or container.
    pub(crate) fn referenced_layers(&self) -> Result<std::collections::HashSet<LayerId>, StoreError> {
        let mut live = std::collections::HashSet::new();
        for img in self.images()? {
            live.extend(img.layers);
        }
        for c in self.containers()? {
            live.extend(c.layers);
        }
        Ok(live)
    }

    /// Removes an image, and the layers no other image or container uses.
    pub fn rmi(&self, name: &strata_types::ImageName) -> Result<Vec<LayerId>, StoreError> {
        self.require_write()?;
        let img = self.image(name)?;
        if let Some(c) = self.containers()?.into_iter().find(|c| &c.image == name) {
            return Err(StoreError::ImageInUse { image: name.clone(), container: c.name });
        }
        let mut live = std::collections::HashSet::new();
        for other in self.images()? {
            if &other.name != name {
                live.extend(other.layers);
            }
        }
        for c in self.containers()? {
            live.extend(c.layers);
        }
        let mut dead: Vec<LayerId> = img.layers.iter().filter(|l| !live.contains(l)).copied().collect();
        dead.sort();
        dead.dedup();
        let key = name.as_str().as_bytes().to_vec();
        self.remove_layers(&dead, |b| self.index.delete(b, Table::Images, &key))?;
        Ok(dead)
    }

    /// Reads the file records of a layer, in stream order.
    pub fn layer_files(&self, rec: &LayerRecord) -> Result<Vec<FileRecord>, StoreError> {
        let mut out = Vec::with_capacity(rec.entries as usize);
        let mut err = None;
        self.index.for_each_file(LayerNum(rec.num), |n, v| {
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
