//! Opening a store: its owner, or a connection to it, and a view of the index.
//!
//! Every [`Store`] is either the store's owner (it holds the lock, has the index open
//! read-write, runs crash recovery when it becomes the owner, and serves other processes'
//! transactions while it lives) or a worker of whichever process owns the store (it reads a
//! read-only view of the index as of opening — stale reads only cost reuse: every decision
//! that must be current is made by the owner — and sends its transactions over the owner's
//! socket). A worker whose owner goes away becomes the owner itself, or the worker of the next
//! one. See `docs/locking.md`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strata_index::{Index, LayerNum, OpenMode, Table};
use strata_types::{ImageName, LayerId};

use crate::lock::Wait;
use crate::owner::{CallError, Connection, Owner, Server, Tx, TxOk};
use crate::paths::StorePaths;
use crate::records::{ContainerRecord, ImageRecord, LayerRecord};
use crate::{StoreError, recover};

/// How to open a store.
#[derive(Clone, Copy, Debug)]
pub struct OpenOptions {
    /// Whether to wait when the store's owner is starting or stopping and cannot answer
    /// yet (a moment), or fail at once.
    pub wait: Wait,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions { wait: Wait::Block }
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The owner role, with its socket server; dropped in this order (server first).
struct Owned {
    _server: Server,
    owner: Arc<Owner>,
}

/// Who runs this handle's transactions.
enum Role {
    Owner(Owned),
    Worker(Connection),
}

/// Where this handle reads the index.
enum View {
    /// The owner's own read-write index.
    Owner(Arc<Owner>),
    /// A read-only instance: the index as of opening.
    ReadOnly(Index),
}

/// The owner's current MANIFEST and its length: every flush and compaction appends to it
/// before the files it obsoletes are deleted.
fn manifest_state(paths: &StorePaths) -> Option<(String, u64)> {
    let current = std::fs::read_to_string(paths.index().join("CURRENT")).ok()?;
    let name = current.trim().to_owned();
    let len = std::fs::metadata(paths.index().join(&name)).ok()?.len();
    Some((name, len))
}

/// Opens a read-only view of the index, consistent as of opening. RocksDB's read-only open
/// reads the MANIFEST, then the WAL files it lists; if the owner flushed (and deleted a WAL)
/// or compacted in between, the view could silently lack what that WAL held. So the open is
/// retried until the MANIFEST did not change while it ran.
fn open_view(paths: &StorePaths) -> Result<Index, StoreError> {
    let mut last_err = None;
    for _ in 0..200 {
        let before = manifest_state(paths);
        match Index::open(&paths.index(), OpenMode::ReadOnly) {
            Ok(i) if before.is_some() && manifest_state(paths) == before => return Ok(i),
            Ok(_) => {}
            Err(e) => last_err = Some(e),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(match last_err {
        Some(e) => e.into(),
        None => StoreError::Corrupt(format!(
            "{}: the index changed during every attempt to read it",
            paths.index().display()
        )),
    })
}

/// An open store.
pub struct Store {
    pub(crate) paths: StorePaths,
    view: View,
    role: Mutex<Role>,
    wait: Wait,
    /// What crash recovery removed when this handle became the owner (if it did).
    pub(crate) recovered: recover::Recovered,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let role = match &*self.role.lock().unwrap_or_else(|p| p.into_inner()) {
            Role::Owner(_) => "owner",
            Role::Worker(_) => "worker",
        };
        f.debug_struct("Store").field("root", &self.paths.root()).field("role", &role).finish()
    }
}

/// The owner, or a connection to it: retried while the lock is held by a process whose
/// socket does not answer yet (it is starting) or any more (it is stopping).
fn owner_or_connection(paths: &StorePaths, wait: Wait) -> Result<Role, StoreError> {
    let start = Instant::now();
    let mut said = false;
    loop {
        if let Ok(c) = Connection::connect(paths.root()) {
            return Ok(Role::Worker(c));
        }
        if let Some(owner) = Owner::try_acquire(paths)? {
            let owner = Arc::new(owner);
            let server = Server::start(Arc::clone(&owner))?;
            return Ok(Role::Owner(Owned { _server: server, owner }));
        }
        if wait == Wait::NoWait && start.elapsed() > Duration::from_millis(500) {
            return Err(StoreError::Locked {
                root: paths.root().display().to_string(),
                holder: crate::lock::holder(&paths.lock_owner()),
            });
        }
        if !said && start.elapsed() > Duration::from_secs(2) {
            eprintln!(
                "strata: waiting for the owner of {} to answer ({})",
                paths.root().display(),
                crate::lock::holder(&paths.lock_owner())
            );
            said = true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Store {
    /// Opens the store at `root`, creating it when it does not exist: becomes its owner, or
    /// a worker of the process that owns it.
    pub fn open(root: &Path, opts: OpenOptions) -> Result<Store, StoreError> {
        let paths = StorePaths::new(root);
        if !root.exists() {
            // A root strata creates is private; one the operator made keeps its mode (the
            // directories inside are private either way).
            crate::files::private_dir(root)?;
        }
        let role = owner_or_connection(&paths, opts.wait)?;
        let (view, recovered) = match &role {
            Role::Owner(o) => (View::Owner(Arc::clone(&o.owner)), o.owner.recovered),
            Role::Worker(_) => (View::ReadOnly(open_view(&paths)?), recover::Recovered::default()),
        };
        Ok(Store { paths, view, role: Mutex::new(role), wait: opts.wait, recovered })
    }

    pub fn root(&self) -> &Path {
        self.paths.root()
    }

    pub fn paths(&self) -> &StorePaths {
        &self.paths
    }

    /// The index as this handle sees it: the owner's own (current), or a worker's view as
    /// of opening.
    pub fn index(&self) -> &Index {
        match &self.view {
            View::Owner(o) => &o.index,
            View::ReadOnly(index) => index,
        }
    }

    /// True when this handle is the store's owner.
    pub fn is_owner(&self) -> bool {
        matches!(&*self.role.lock().unwrap_or_else(|p| p.into_inner()), Role::Owner(_))
    }

    /// What crash recovery removed when this handle became the owner.
    pub fn recovered(&self) -> recover::Recovered {
        self.recovered
    }

    /// Runs a transaction in the owner (this process, or the one serving the socket). A
    /// request that did not reach an owner (it was stopping) goes to the next one; this
    /// process becomes the owner if nobody else is.
    pub(crate) fn tx(&self, tx: Tx) -> Result<TxOk, StoreError> {
        let mut role = self.role.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match &mut *role {
                Role::Owner(o) => return o.owner.apply(tx.clone()),
                Role::Worker(c) => match c.call(&tx) {
                    Ok(r) => return r,
                    Err(CallError::NotDelivered) => {
                        // Wait for the stopping owner's lock, then take it or find the next.
                        std::thread::sleep(Duration::from_millis(5));
                        *role = owner_or_connection(&self.paths, self.wait)?;
                    }
                    Err(CallError::Lost(e)) => {
                        // The owner died (killed) with the request: it may or may not have
                        // been applied. Send it again to the next owner; every transaction
                        // is idempotent, or says "already done" in a way `after_retry` knows.
                        std::thread::sleep(Duration::from_millis(5));
                        *role = owner_or_connection(&self.paths, self.wait)
                            .map_err(|_| StoreError::OwnerLost { source: e })?;
                        let r = match &mut *role {
                            Role::Owner(o) => o.owner.apply(tx.clone()),
                            Role::Worker(c) => match c.call(&tx) {
                                Ok(r) => r,
                                Err(CallError::NotDelivered) => continue,
                                Err(CallError::Lost(e)) => return Err(StoreError::OwnerLost { source: e }),
                            },
                        };
                        return tx.after_retry(r);
                    }
                },
            }
        }
    }

    // ---- records ----

    fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what} record: {e}")))
    }

    pub fn image(&self, name: &ImageName) -> Result<ImageRecord, StoreError> {
        image(self.index(), name)
    }

    pub fn has_image(&self, name: &ImageName) -> Result<bool, StoreError> {
        Ok(self.index().get(Table::Images, name.as_str().as_bytes())?.is_some())
    }

    pub fn images(&self) -> Result<Vec<ImageRecord>, StoreError> {
        images(self.index())
    }

    pub fn layer(&self, id: &LayerId) -> Result<Option<LayerRecord>, StoreError> {
        layer(self.index(), id)
    }

    pub fn layer_required(&self, id: &LayerId) -> Result<LayerRecord, StoreError> {
        self.layer(id)?.ok_or(StoreError::MissingLayer(*id))
    }

    pub fn layers(&self) -> Result<Vec<LayerRecord>, StoreError> {
        layers(self.index())
    }

    pub fn layer_id_of(&self, num: LayerNum) -> Result<Option<LayerId>, StoreError> {
        match self.index().get(Table::LayerNums, &num.0.to_be_bytes())? {
            Some(b) => {
                let d = strata_types::Sha256Digest::from_slice(&b)
                    .ok_or_else(|| StoreError::Corrupt(format!("layer number {num} maps to {} bytes", b.len())))?;
                Ok(Some(LayerId(d)))
            }
            None => Ok(None),
        }
    }

    pub fn container(&self, name: &ImageName) -> Result<ContainerRecord, StoreError> {
        container(self.index(), name)
    }

    pub fn containers(&self) -> Result<Vec<ContainerRecord>, StoreError> {
        containers(self.index())
    }
}

// Record reads, shared by handles (through their view) and the owner (its own index).

fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    Store::decode(what, bytes)
}

pub(crate) fn image(index: &Index, name: &ImageName) -> Result<ImageRecord, StoreError> {
    match index.get(Table::Images, name.as_str().as_bytes())? {
        Some(b) => decode("image", &b),
        None => Err(StoreError::NoSuchImage(name.clone())),
    }
}

pub(crate) fn images(index: &Index) -> Result<Vec<ImageRecord>, StoreError> {
    index.scan(Table::Images)?.iter().map(|(_, v)| decode("image", v)).collect()
}

pub(crate) fn layer(index: &Index, id: &LayerId) -> Result<Option<LayerRecord>, StoreError> {
    match index.get(Table::Layers, id.0.as_bytes())? {
        Some(b) => decode("layer", &b).map(Some),
        None => Ok(None),
    }
}

pub(crate) fn layers(index: &Index) -> Result<Vec<LayerRecord>, StoreError> {
    index.scan(Table::Layers)?.iter().map(|(_, v)| decode("layer", v)).collect()
}

pub(crate) fn container(index: &Index, name: &ImageName) -> Result<ContainerRecord, StoreError> {
    match index.get(Table::Containers, name.as_str().as_bytes())? {
        Some(b) => decode("container", &b),
        None => Err(StoreError::NoSuchContainer(name.clone())),
    }
}

pub(crate) fn containers(index: &Index) -> Result<Vec<ContainerRecord>, StoreError> {
    index.scan(Table::Containers)?.iter().map(|(_, v)| decode("container", v)).collect()
}

impl Owner {
    pub(crate) fn layer(&self, id: &LayerId) -> Result<Option<LayerRecord>, StoreError> {
        layer(&self.index, id)
    }
}

// Here rather than in `records.rs`, which stays pure (the fuzz targets compile it alone).
impl crate::records::ImageRecord {
    /// A record created now, its config digest computed from the config's bytes.
    pub(crate) fn new(
        name: strata_types::ImageName,
        layers: Vec<strata_types::LayerId>,
        config: String,
        source: String,
    ) -> Self {
        let config_digest = strata_types::Sha256Digest::of(config.as_bytes());
        Self { name, layers, config, config_digest, created: now_secs(), source }
    }
}
