//! Transactions as they travel to the owner, and their answers.
//!
//! On the socket each request and each answer is one JSON line. Errors keep their kind
//! (callers match on `NoSuchImage`, `ImageExists`, ...) and their message; an error of a
//! kind no caller distinguishes arrives as [`StoreError::Owner`] with the owner's message.

use serde::{Deserialize, Serialize};
use strata_types::{ImageName, LayerId};

use super::{Owner, RootPath};
use crate::StoreError;
use crate::gc::{GcMarked, GcPruned};
use crate::publish::{PublishTx, Published};
use crate::records::{ContainerRecord, ImageRecord};

/// A transaction.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Tx {
    /// Publishes staged layers and optionally an image (see [`PublishTx`]).
    Publish(PublishTx),
    /// Pins `layers` in the pin file `file` (held by the caller); answers which exist now.
    Pin { file: RootPath, layers: Vec<LayerId> },
    /// Pins the layers of `images` as they are now; answers the images' records.
    PinImages { file: RootPath, images: Vec<ImageName> },
    /// Removes an image and the layers nothing else uses (their directories go into `trash`).
    RemoveImage { name: ImageName, trash: RootPath },
    /// Removes layers an operation published but did not use (it failed), unless others
    /// use them; directories into `trash`.
    Discard { layers: Vec<LayerId>, pins: RootPath, trash: RootPath },
    /// Creates a container on an image: its directories and record (`created` chosen by the
    /// caller, so a retry can tell its own record).
    ContainerCreate { image: ImageName, name: ImageName, created: u64 },
    /// Removes a container's record (the caller unmounted it); its directory goes into `trash`.
    ContainerRemove { name: ImageName, trash: RootPath },
    /// gc's mark and record sweep; dead layer directories go into `trash`.
    GcMark { trash: RootPath },
    /// gc's index pruning, one bounded key range at a time.
    GcPrune { after: Option<String>, max_keys: u64 },
    /// Compacts the index (runs outside the transaction mutex).
    Compact,
    /// Deletes an image record and nothing else (tests: a store damaged by hand).
    ForgetImage { name: ImageName },
}

impl Tx {
    /// The answer to a transaction sent again after its owner died without answering (it
    /// may have been applied): errors that only say "already done" become success. Every
    /// other transaction is idempotent as it is (pins, gc, publishing layers, an identical
    /// image record).
    pub(crate) fn after_retry(&self, r: Result<TxOk, StoreError>) -> Result<TxOk, StoreError> {
        match (self, r) {
            (Tx::RemoveImage { .. }, Err(StoreError::NoSuchImage(_))) => Ok(TxOk::Removed(Vec::new())),
            (Tx::ForgetImage { .. }, Err(StoreError::NoSuchImage(_))) => Ok(TxOk::Done),
            (Tx::ContainerRemove { .. }, Err(StoreError::NoSuchContainer(_))) => Ok(TxOk::Done),
            (_, r) => r,
        }
    }

    /// Whether the transaction runs under the owner's mutex. Compaction is long and needs
    /// none: RocksDB orders it with writes itself.
    pub(crate) fn serialized(&self) -> bool {
        !matches!(self, Tx::Compact)
    }
}

/// A transaction's answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TxOk {
    Done,
    Published(Published),
    Present(Vec<bool>),
    Images(Vec<ImageRecord>),
    Removed(Vec<LayerId>),
    Container(ContainerRecord),
    GcMarked(GcMarked),
    GcPruned(GcPruned),
}

pub(crate) fn dispatch(owner: &Owner, tx: Tx) -> Result<TxOk, StoreError> {
    match tx {
        Tx::Publish(p) => owner.publish(p).map(TxOk::Published),
        Tx::Pin { file, layers } => owner.pin(&file, &layers).map(TxOk::Present),
        Tx::PinImages { file, images } => owner.pin_images(&file, &images).map(TxOk::Images),
        Tx::RemoveImage { name, trash } => owner.remove_image(&name, &trash).map(TxOk::Removed),
        Tx::Discard { layers, pins, trash } => owner.discard(&layers, &pins, &trash).map(TxOk::Removed),
        Tx::ContainerCreate { image, name, created } => {
            owner.container_create(&image, &name, created).map(TxOk::Container)
        }
        Tx::ContainerRemove { name, trash } => owner.container_remove(&name, &trash).map(|()| TxOk::Done),
        Tx::GcMark { trash } => owner.gc_mark(&trash).map(TxOk::GcMarked),
        Tx::GcPrune { after, max_keys } => owner.gc_prune(after.as_deref(), max_keys).map(TxOk::GcPruned),
        Tx::Compact => {
            owner.index.compact();
            Ok(TxOk::Done)
        }
        Tx::ForgetImage { name } => owner.forget_image(&name).map(|()| TxOk::Done),
    }
}

/// An error as it travels back to a worker.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WireError {
    NoSuchImage(ImageName),
    ImageExists(ImageName),
    NoSuchContainer(ImageName),
    ContainerExists(ImageName),
    ImageInUse { image: ImageName, container: ImageName },
    MissingLayer(LayerId),
    Corrupt(String),
    Other(String),
}

impl From<&StoreError> for WireError {
    fn from(e: &StoreError) -> WireError {
        match e {
            StoreError::NoSuchImage(n) => WireError::NoSuchImage(n.clone()),
            StoreError::ImageExists(n) => WireError::ImageExists(n.clone()),
            StoreError::NoSuchContainer(n) => WireError::NoSuchContainer(n.clone()),
            StoreError::ContainerExists(n) => WireError::ContainerExists(n.clone()),
            StoreError::ImageInUse { image, container } => {
                WireError::ImageInUse { image: image.clone(), container: container.clone() }
            }
            StoreError::MissingLayer(id) => WireError::MissingLayer(*id),
            StoreError::Corrupt(m) => WireError::Corrupt(m.clone()),
            other => WireError::Other(other.to_string()),
        }
    }
}

impl From<WireError> for StoreError {
    fn from(e: WireError) -> StoreError {
        match e {
            WireError::NoSuchImage(n) => StoreError::NoSuchImage(n),
            WireError::ImageExists(n) => StoreError::ImageExists(n),
            WireError::NoSuchContainer(n) => StoreError::NoSuchContainer(n),
            WireError::ContainerExists(n) => StoreError::ContainerExists(n),
            WireError::ImageInUse { image, container } => StoreError::ImageInUse { image, container },
            WireError::MissingLayer(id) => StoreError::MissingLayer(id),
            WireError::Corrupt(m) => StoreError::Corrupt(m),
            WireError::Other(m) => StoreError::Owner(m),
        }
    }
}

/// One answer on the socket.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Answer {
    Ok(TxOk),
    Err(WireError),
}
