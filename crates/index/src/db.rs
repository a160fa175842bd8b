//! The RocksDB handle, batches and scans.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType, DataBlockIndexType,
    IteratorMode, Options, WriteBatch, WriteOptions,
};

use crate::codec::{LocOp, decode_locs, encode_locs, encode_op, full_merge};
use crate::key::{Key, LayerNum, Loc};

const CF_LOCS: &str = "locs";
const CF_FILES: &str = "files";
const CF_RECORDS: &str = "records";
const SCHEMA_KEY: &[u8] = b"schema";
const SCHEMA_VERSION: &[u8] = b"1";
const NEXT_LAYER_KEY: &[u8] = b"next_layer";
/// Keys per multi_get call (bounds memory of one call; RocksDB batches internally).
const LOOKUP_BATCH: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index {path}: {message}")]
    Rocks { path: PathBuf, message: String },
    #[error("index {path} is corrupt: {what}")]
    Corrupt { path: PathBuf, what: String },
    #[error("index {path} has schema version {found:?}, this strata reads {expected:?}")]
    Schema { path: PathBuf, found: String, expected: String },
    #[error("index {path} was opened read-only")]
    ReadOnly { path: PathBuf },
}

/// How the index is opened: for writing (one process at a time: the store's owner, which
/// holds the store lock), or read-only: a consistent view as of opening, alongside the owner
/// (RocksDB's read-only mode recovers the owner's MANIFEST and WAL like a restart would, and
/// keeps every table file it knows open, so the owner deleting one later does not matter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    ReadWrite,
    ReadOnly,
}

/// The store's record tables, all in the `records` column family under a table byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Table {
    /// DiffID (32 bytes) → layer record.
    Layers = 1,
    /// Layer number (u32 BE) → DiffID.
    LayerNums = 2,
    /// Image name → image record.
    Images = 3,
    /// Container name → container record.
    Containers = 4,
}

fn table_key(t: Table, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(t as u8);
    k.extend_from_slice(key);
    k
}

fn file_key(layer: LayerNum, file: u32) -> [u8; 8] {
    let mut k = [0u8; 8];
    k[..4].copy_from_slice(&layer.0.to_be_bytes());
    k[4..].copy_from_slice(&file.to_be_bytes());
    k
}

/// A record of a [`Table`]: key (without the table byte) and value.
pub type Record = (Vec<u8>, Vec<u8>);

/// A set of changes that becomes visible atomically in [`Index::commit`].
#[derive(Default)]
pub struct Batch {
    wb: WriteBatch,
    loc_ops: Vec<(Key, LocOp)>,
    ops: usize,
    reserved_layers: u32,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch").field("ops", &self.ops).field("loc_keys", &self.loc_ops.len()).finish()
    }
}

impl Batch {
    /// Records that `key`'s bytes are at `loc`.
    pub fn add_loc(&mut self, key: Key, loc: Loc) {
        self.loc_ops.push((key, LocOp::Add(loc)));
    }

    /// Drops every location of `layer` under `key`.
    pub fn remove_layer_loc(&mut self, key: Key, layer: LayerNum) {
        self.loc_ops.push((key, LocOp::RemoveLayer(layer)));
    }

    /// Number of pending location changes.
    pub fn loc_ops(&self) -> usize {
        self.loc_ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops == 0 && self.loc_ops.is_empty()
    }
}

/// Size figures of the index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Estimated number of location keys.
    pub loc_keys: u64,
    /// Bytes of SST files of all column families.
    pub sst_bytes: u64,
    /// Bytes of the location column family's SST files.
    pub loc_sst_bytes: u64,
}

/// The open index.
pub struct Index {
    db: DB,
    path: PathBuf,
    mode: OpenMode,
    commit_lock: Mutex<()>,
}

const LOCS_MERGE: &str = "strata-locs-v1";

/// Partial merge: operands are op sequences, so two of them combine by concatenation.
fn concat_operands(_key: &[u8], _base: Option<&[u8]>, ops: &rocksdb::MergeOperands) -> Option<Vec<u8>> {
    Some(ops.iter().flatten().copied().collect())
}

fn merge_locs(_key: &[u8], base: Option<&[u8]>, ops: &rocksdb::MergeOperands) -> Option<Vec<u8>> {
    Some(full_merge(base, ops))
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").field("path", &self.path).field("mode", &self.mode).finish()
    }
}

impl Index {
    /// Opens (creating when writable) the index at `path`.
    pub fn open(path: &Path, mode: OpenMode) -> Result<Index, IndexError> {
        let cache = Cache::new_lru_cache(64 << 20);
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        // The fd limit may be 1024; RocksDB must leave room for the rest of strata. A
        // read-only view keeps every table it knows open: the owner may delete a table file
        // once a compaction is done, and the view could not open it again by name.
        db_opts.set_max_open_files(if mode == OpenMode::ReadOnly { -1 } else { 256 });
        db_opts.set_keep_log_file_num(3);
        db_opts.set_max_background_jobs(2);
        let cfs = [CF_LOCS, CF_FILES, CF_RECORDS].map(|name| {
            let mut o = Options::default();
            let mut t = BlockBasedOptions::default();
            t.set_block_cache(&cache);
            t.set_block_size(16 * 1024);
            if name == CF_LOCS {
                // Random digests neither compress nor share prefixes; a bloom filter makes
                // misses (most lookups on a pull of new content) cheap. Filters and indexes
                // stay with the open table readers (~1.3 bytes per key), not in the block
                // cache: an SST's full filter is one block of ~1.2 MB per million keys,
                // larger than a cache shard (64 MB / 64), so it was evicted as soon as it
                // was read and every multi_get batch read and checksummed it again (10x
                // slower lookups, measured).
                t.set_bloom_filter(10.0, false);
                t.set_cache_index_and_filter_blocks(false);
                // Point lookups only: a hash index inside each data block skips the binary
                // search over restart points.
                t.set_data_block_index_type(DataBlockIndexType::BinaryAndHash);
                t.set_data_block_hash_ratio(0.75);
                o.set_compression_type(DBCompressionType::None);
                o.set_write_buffer_size(32 << 20);
                o.set_merge_operator(LOCS_MERGE, merge_locs, concat_operands);
            } else {
                o.set_compression_type(DBCompressionType::Lz4);
                o.set_write_buffer_size(16 << 20);
            }
            o.set_block_based_table_factory(&t);
            ColumnFamilyDescriptor::new(name, o)
        });
        let err = |e: rocksdb::Error| IndexError::Rocks { path: path.to_owned(), message: e.into_string() };
        let db = match mode {
            OpenMode::ReadWrite => DB::open_cf_descriptors(&db_opts, path, cfs).map_err(err)?,
            OpenMode::ReadOnly => DB::open_cf_descriptors_read_only(&db_opts, path, cfs, false).map_err(err)?,
        };
        let index = Index { db, path: path.to_owned(), mode, commit_lock: Mutex::new(()) };
        index.check_schema()?;
        Ok(index)
    }

    fn check_schema(&self) -> Result<(), IndexError> {
        match self.db.get(SCHEMA_KEY).map_err(|e| self.rocks(e))? {
            Some(v) if v == SCHEMA_VERSION => Ok(()),
            Some(v) => Err(IndexError::Schema {
                path: self.path.clone(),
                found: String::from_utf8_lossy(&v).into_owned(),
                expected: String::from_utf8_lossy(SCHEMA_VERSION).into_owned(),
            }),
            None if self.mode == OpenMode::ReadWrite => {
                let mut o = WriteOptions::default();
                o.set_sync(true);
                self.db.put_opt(SCHEMA_KEY, SCHEMA_VERSION, &o).map_err(|e| self.rocks(e))
            }
            None => Ok(()),
        }
    }

    fn rocks(&self, e: rocksdb::Error) -> IndexError {
        IndexError::Rocks { path: self.path.clone(), message: e.into_string() }
    }

    fn corrupt(&self, what: impl Into<String>) -> IndexError {
        IndexError::Corrupt { path: self.path.clone(), what: what.into() }
    }

    fn cf(&self, name: &str) -> &ColumnFamily {
        self.db.cf_handle(name).expect("column families are created at open")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn mode(&self) -> OpenMode {
        self.mode
    }

    fn writable(&self) -> Result<(), IndexError> {
        if self.mode == OpenMode::ReadWrite { Ok(()) } else { Err(IndexError::ReadOnly { path: self.path.clone() }) }
    }

    /// Looks up many keys at once; one result per key, in order (empty: unknown).
    pub fn lookup(&self, keys: &[Key]) -> Result<Vec<Vec<Loc>>, IndexError> {
        let cf = self.cf(CF_LOCS);
        let mut out = Vec::with_capacity(keys.len());
        for part in keys.chunks(LOOKUP_BATCH) {
            let encoded: Vec<[u8; Key::LEN]> = part.iter().map(Key::encode).collect();
            // Sorting lets RocksDB walk each data block once; results go back in input order.
            let mut order: Vec<usize> = (0..encoded.len()).collect();
            order.sort_unstable_by(|&a, &b| encoded[a].cmp(&encoded[b]));
            let sorted: Vec<&[u8]> = order.iter().map(|&i| &encoded[i][..]).collect();
            let results = self.db.batched_multi_get_cf(cf, sorted, true);
            let mut part_out = vec![Vec::new(); part.len()];
            for (slot, r) in order.into_iter().zip(results) {
                if let Some(v) = r.map_err(|e| self.rocks(e))? {
                    part_out[slot] =
                        decode_locs(&v).ok_or_else(|| self.corrupt(format!("bad locations for {:?}", part[slot])))?;
                }
            }
            out.extend(part_out);
        }
        Ok(out)
    }

    pub fn batch(&self) -> Batch {
        Batch::default()
    }

    /// Applies `batch` atomically (and durably: the WAL is synced). Added locations are
    /// merge operands, so a publish reads nothing first; a key that loses locations is
    /// rewritten (or deleted once empty) from its current list. Writers are serialized
    /// (one owner process, and this mutex), so that read cannot race another write.
    pub fn commit(&self, batch: Batch) -> Result<(), IndexError> {
        self.writable()?;
        let _guard = self.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        let Batch { mut wb, loc_ops, .. } = batch;
        let cf = self.cf(CF_LOCS);
        let mut shrinking: BTreeMap<Key, Vec<&LocOp>> = BTreeMap::new();
        for (key, op) in &loc_ops {
            if matches!(op, LocOp::RemoveLayer(_)) {
                shrinking.insert(*key, Vec::new());
            }
        }
        for (key, op) in &loc_ops {
            match shrinking.get_mut(key) {
                Some(ops) => ops.push(op),
                None => wb.merge_cf(cf, key.encode(), encode_op(op)),
            }
        }
        let keys: Vec<Key> = shrinking.keys().copied().collect();
        for ((key, ops), current) in shrinking.into_iter().zip(self.lookup(&keys)?) {
            let encoded: Vec<Vec<u8>> = ops.iter().map(|op| encode_op(op)).collect();
            let merged = full_merge(Some(&encode_locs(&current)), encoded.iter().map(Vec::as_slice));
            if merged.is_empty() {
                wb.delete_cf(cf, key.encode());
            } else {
                wb.put_cf(cf, key.encode(), merged);
            }
        }
        let mut o = WriteOptions::default();
        o.set_sync(true);
        self.db.write_opt(wb, &o).map_err(|e| self.rocks(e))
    }

    // ---- records ----

    pub fn put(&self, batch: &mut Batch, table: Table, key: &[u8], value: &[u8]) {
        batch.wb.put_cf(self.cf(CF_RECORDS), table_key(table, key), value);
        batch.ops += 1;
    }

    pub fn delete(&self, batch: &mut Batch, table: Table, key: &[u8]) {
        batch.wb.delete_cf(self.cf(CF_RECORDS), table_key(table, key));
        batch.ops += 1;
    }

    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, IndexError> {
        self.db.get_cf(self.cf(CF_RECORDS), table_key(table, key)).map_err(|e| self.rocks(e))
    }

    /// All (key, value) pairs of a table, keys without the table byte, in key order.
    pub fn scan(&self, table: Table) -> Result<Vec<Record>, IndexError> {
        let prefix = [table as u8];
        let mut out = Vec::new();
        let it = self.db.iterator_cf(self.cf(CF_RECORDS), IteratorMode::From(&prefix, rocksdb::Direction::Forward));
        for item in it {
            let (k, v) = item.map_err(|e| self.rocks(e))?;
            if k.first() != Some(&(table as u8)) {
                break;
            }
            out.push((k[1..].to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    // ---- files ----

    pub fn put_file(&self, batch: &mut Batch, layer: LayerNum, file: u32, value: &[u8]) {
        batch.wb.put_cf(self.cf(CF_FILES), file_key(layer, file), value);
        batch.ops += 1;
    }

    pub fn get_file(&self, layer: LayerNum, file: u32) -> Result<Option<Vec<u8>>, IndexError> {
        self.db.get_cf(self.cf(CF_FILES), file_key(layer, file)).map_err(|e| self.rocks(e))
    }

    /// Visits the file records of `layer` in file-number order; stop early by returning false.
    pub fn for_each_file(&self, layer: LayerNum, mut f: impl FnMut(u32, &[u8]) -> bool) -> Result<(), IndexError> {
        let start = file_key(layer, 0);
        let it = self.db.iterator_cf(self.cf(CF_FILES), IteratorMode::From(&start, rocksdb::Direction::Forward));
        for item in it {
            let (k, v) = item.map_err(|e| self.rocks(e))?;
            if k.len() != 8 || k[..4] != layer.0.to_be_bytes() {
                break;
            }
            let n = u32::from_be_bytes(k[4..8].try_into().expect("8-byte key"));
            if !f(n, &v) {
                break;
            }
        }
        Ok(())
    }

    /// Deletes every file record of `layer` (a range delete: constant cost).
    pub fn delete_files(&self, batch: &mut Batch, layer: LayerNum) {
        let from = file_key(layer, 0);
        let to = match layer.0.checked_add(1) {
            Some(n) => file_key(LayerNum(n), 0).to_vec(),
            None => vec![0xff; 9],
        };
        batch.wb.delete_range_cf(self.cf(CF_FILES), from.to_vec(), to);
        batch.ops += 1;
    }

    /// Layer numbers that have file records (for gc's orphan check), ascending.
    pub fn layers_with_files(&self) -> Result<Vec<LayerNum>, IndexError> {
        let mut out = Vec::new();
        let mut start = [0u8; 8];
        loop {
            let mut it =
                self.db.iterator_cf(self.cf(CF_FILES), IteratorMode::From(&start, rocksdb::Direction::Forward));
            let Some(item) = it.next() else { break };
            let (k, _) = item.map_err(|e| self.rocks(e))?;
            if k.len() != 8 {
                return Err(self.corrupt("file key of wrong length"));
            }
            let n = u32::from_be_bytes(k[..4].try_into().expect("4 bytes"));
            out.push(LayerNum(n));
            match n.checked_add(1) {
                Some(next) => start = file_key(LayerNum(next), 0),
                None => break,
            }
        }
        Ok(out)
    }

    // ---- counters ----

    /// Reserves a fresh layer number (written in `batch`, so it is only spent if the batch
    /// commits; callers hold the store's write lock, so numbers are not handed out twice).
    pub fn next_layer_num(&self, batch: &mut Batch) -> Result<LayerNum, IndexError> {
        let cur = match self.db.get(NEXT_LAYER_KEY).map_err(|e| self.rocks(e))? {
            Some(v) => u32::from_be_bytes(v.as_slice().try_into().map_err(|_| self.corrupt("next_layer counter"))?),
            None => 1,
        };
        let reserved = cur + batch.reserved_layers;
        batch.reserved_layers += 1;
        batch.wb.put(NEXT_LAYER_KEY, (reserved + 1).to_be_bytes());
        batch.ops += 1;
        Ok(LayerNum(reserved))
    }

    // ---- maintenance ----

    /// Visits location entries in key order, starting after `after` (from the first when
    /// `None`), at most `max_keys` of them; `keep` decides per location. Entries whose list
    /// becomes empty are deleted. One synced batch. Returns the locations removed, the keys
    /// deleted, and the last key visited when there may be more (`None`: the end was reached).
    pub fn retain_locs(
        &self,
        after: Option<&[u8]>,
        max_keys: u64,
        mut keep: impl FnMut(&Key, &Loc) -> bool,
    ) -> Result<(u64, u64, Option<Vec<u8>>), IndexError> {
        self.writable()?;
        let cf = self.cf(CF_LOCS);
        let mut wb = WriteBatch::default();
        let (mut removed, mut deleted, mut visited) = (0u64, 0u64, 0u64);
        let mode = match after {
            Some(k) => IteratorMode::From(k, rocksdb::Direction::Forward),
            None => IteratorMode::Start,
        };
        let mut last = None;
        for item in self.db.iterator_cf(cf, mode) {
            let (k, v) = item.map_err(|e| self.rocks(e))?;
            if after.is_some_and(|a| a == &k[..]) {
                continue;
            }
            if visited == max_keys {
                break;
            }
            visited += 1;
            last = Some(k.to_vec());
            let (Some(key), Some(locs)) = (Key::decode(&k), decode_locs(&v)) else {
                wb.delete_cf(cf, &k);
                deleted += 1;
                continue;
            };
            let kept: Vec<Loc> = locs.iter().copied().filter(|l| keep(&key, l)).collect();
            if kept.len() != locs.len() {
                removed += (locs.len() - kept.len()) as u64;
                if kept.is_empty() {
                    wb.delete_cf(cf, &k);
                    deleted += 1;
                } else {
                    wb.put_cf(cf, &k, encode_locs(&kept));
                }
            }
        }
        let mut o = WriteOptions::default();
        o.set_sync(true);
        self.db.write_opt(wb, &o).map_err(|e| self.rocks(e))?;
        let more = if visited == max_keys { last } else { None };
        Ok((removed, deleted, more))
    }

    /// Visits every location entry (fsck); stop early by returning false.
    pub fn for_each_loc(&self, mut f: impl FnMut(Key, &[Loc]) -> bool) -> Result<(), IndexError> {
        for item in self.db.iterator_cf(self.cf(CF_LOCS), IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.rocks(e))?;
            let key = Key::decode(&k).ok_or_else(|| self.corrupt("location key of wrong shape"))?;
            let locs = decode_locs(&v).ok_or_else(|| self.corrupt(format!("bad locations for {key:?}")))?;
            if !f(key, &locs) {
                break;
            }
        }
        Ok(())
    }

    /// Compacts every column family (after gc).
    pub fn compact(&self) {
        for name in [CF_LOCS, CF_FILES, CF_RECORDS] {
            self.db.compact_range_cf(self.cf(name), None::<&[u8]>, None::<&[u8]>);
        }
    }

    /// Flushes memtables to SST files (so size figures are meaningful).
    pub fn flush(&self) -> Result<(), IndexError> {
        for name in [CF_LOCS, CF_FILES, CF_RECORDS] {
            self.db.flush_cf(self.cf(name)).map_err(|e| self.rocks(e))?;
        }
        Ok(())
    }

    pub fn stats(&self) -> Result<IndexStats, IndexError> {
        let prop = |cf: &str, p: &str| -> Result<u64, IndexError> {
            Ok(self.db.property_int_value_cf(self.cf(cf), p).map_err(|e| self.rocks(e))?.unwrap_or(0))
        };
        let loc_sst = prop(CF_LOCS, "rocksdb.total-sst-files-size")?;
        Ok(IndexStats {
            loc_keys: prop(CF_LOCS, "rocksdb.estimate-num-keys")?,
            loc_sst_bytes: loc_sst,
            sst_bytes: loc_sst
                + prop(CF_FILES, "rocksdb.total-sst-files-size")?
                + prop(CF_RECORDS, "rocksdb.total-sst-files-size")?,
        })
    }
}
