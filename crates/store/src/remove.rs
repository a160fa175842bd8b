//! `strata rmi NAME`: an image, and the layers nothing else uses.

use strata_index::Table;
use strata_types::{ImageName, LayerId};

use crate::owner::{Owner, RootPath, Tx, TxOk};
use crate::staging::Staging;
use crate::{Store, StoreError};

impl Store {
    /// Removes an image, and the layers no other image, container, snapshot or live
    /// operation uses. Returns the layers removed.
    pub fn rmi(&self, name: &ImageName) -> Result<Vec<LayerId>, StoreError> {
        let trash = Staging::new(&self.paths, "rmi")?;
        let tx = Tx::RemoveImage { name: name.clone(), trash: trash.root_path()? };
        match self.tx(tx)? {
            TxOk::Removed(layers) => Ok(layers),
            other => Err(crate::owner::unexpected(other)),
        }
        // `trash` (the removed directories) is deleted on drop, outside the owner's mutex.
    }

    /// Deletes an image record and nothing else, leaving its layers unreferenced (what a
    /// store looks like after images are dropped by hand or by a crash in another tool).
    #[doc(hidden)]
    pub fn forget_image_record_for_tests(&self, name: &ImageName) -> Result<(), StoreError> {
        self.tx(Tx::ForgetImage { name: name.clone() }).map(|_| ())
    }
}

impl Owner {
    /// The `remove_image` transaction.
    pub(crate) fn remove_image(&self, name: &ImageName, trash: &RootPath) -> Result<Vec<LayerId>, StoreError> {
        let img = crate::store::image(&self.index, name)?;
        if let Some(c) = crate::store::containers(&self.index)?.into_iter().find(|c| &c.image == name) {
            return Err(StoreError::ImageInUse { image: name.clone(), container: c.name });
        }
        let live = self.live_layers(Some(name), None)?;
        let mut dead: Vec<LayerId> = img.layers.iter().filter(|l| !live.contains(l)).copied().collect();
        dead.sort();
        dead.dedup();
        let key = name.as_str().as_bytes().to_vec();
        self.remove_layers(&dead, trash, |b| self.index.delete(b, Table::Images, &key))?;
        Ok(dead)
    }

    /// The `discard` transaction: layers an operation published and then did not use (it
    /// failed) go again, unless something else references them or another live operation
    /// pinned them meanwhile.
    pub(crate) fn discard(
        &self,
        layers: &[LayerId],
        pins: &RootPath,
        trash: &RootPath,
    ) -> Result<Vec<LayerId>, StoreError> {
        let live = self.live_layers(None, Some(pins))?;
        let dead: Vec<LayerId> = layers.iter().filter(|l| !live.contains(l)).copied().collect();
        self.remove_layers(&dead, trash, |_| {})?;
        Ok(dead)
    }

    /// The `forget_image` transaction (tests).
    pub(crate) fn forget_image(&self, name: &ImageName) -> Result<(), StoreError> {
        crate::store::image(&self.index, name)?;
        let mut b = self.index.batch();
        self.index.delete(&mut b, Table::Images, name.as_str().as_bytes());
        Ok(self.index.commit(b)?)
    }
}
