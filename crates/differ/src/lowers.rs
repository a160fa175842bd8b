//! "Does this path exist in the lowers?", answered with overlayfs's rules, so lowers can be
//! store layer directories that carry whiteouts and opaque directories themselves.
//!
//! Layers are searched top-most first. In each layer the path's ancestors are checked: a
//! whiteout or a non-directory ancestor hides the path in this layer and every layer below;
//! an opaque ancestor (`overlay.opaque=y`) hides every layer below. The first layer that has
//! the path decides: a whiteout there means "absent", anything else is the lower object.

use std::cell::RefCell;
use std::collections::HashMap;

use strata_types::RelPath;

use crate::DiffError;
use crate::inode::Inode;
use crate::tree::Tree;

/// Why the lowers cannot be resolved by this walk (redirects or metacopy in a lower).
#[derive(Debug)]
pub(crate) enum LookupError {
    Unprovable(String),
    Err(DiffError),
}

impl From<DiffError> for LookupError {
    fn from(e: DiffError) -> Self {
        LookupError::Err(e)
    }
}

#[derive(Clone, Copy, Debug)]
enum DirState {
    Missing,
    /// A whiteout or a non-directory: nothing below it in this layer or the ones under it.
    Blocks,
    Dir {
        opaque: bool,
    },
}

/// The lower layers of an overlay, top-most first, with a cache of directory lookups.
#[derive(Debug)]
pub(crate) struct LowerStack {
    layers: Vec<Tree>,
    dirs: RefCell<HashMap<(usize, RelPath), DirState>>,
}

impl LowerStack {
    pub fn new(layers: &[Tree]) -> LowerStack {
        LowerStack { layers: layers.to_vec(), dirs: RefCell::new(HashMap::new()) }
    }

    fn dir_state(&self, layer: usize, rel: &RelPath) -> Result<DirState, LookupError> {
        if let Some(s) = self.dirs.borrow().get(&(layer, rel.clone())) {
            return Ok(*s);
        }
        let state = match self.layers[layer].read_inode(rel)? {
            None => DirState::Missing,
            Some(i) if i.is_dir() => {
                if i.ovl.redirect {
                    return Err(LookupError::Unprovable(format!(
                        "lower directory {} has an overlay.redirect xattr",
                        self.layers[layer].display(rel).display()
                    )));
                }
                DirState::Dir { opaque: i.ovl.is_opaque() }
            }
            Some(_) => DirState::Blocks,
        };
        self.dirs.borrow_mut().insert((layer, rel.clone()), state);
        Ok(state)
    }

    /// The object the merged lowers show at `rel`, or `None` when it does not exist there.
    pub fn lookup(&self, rel: &RelPath) -> Result<Option<Inode>, LookupError> {
        if rel.is_root() {
            return Ok(None);
        }
        let ancestors = rel.ancestors();
        'layers: for layer in 0..self.layers.len() {
            let mut opaque_above = false;
            for anc in &ancestors {
                match self.dir_state(layer, anc)? {
                    DirState::Missing => {
                        if opaque_above {
                            return Ok(None);
                        }
                        continue 'layers;
                    }
                    DirState::Blocks => return Ok(None),
                    DirState::Dir { opaque } => opaque_above |= opaque,
                }
            }
            let abs = self.layers[layer].display(rel);
            if let Some(inode) = self.layers[layer].read_inode(rel)? {
                if inode.is_whiteout() {
                    return Ok(None);
                }
                if inode.ovl.metacopy || (inode.ovl.redirect && !inode.is_dir()) {
                    return Err(LookupError::Unprovable(format!(
                        "lower file {} is a metacopy/redirect (its data lives elsewhere)",
                        abs.display()
                    )));
                }
                if inode.is_dir() && inode.ovl.redirect {
                    return Err(LookupError::Unprovable(format!(
                        "lower directory {} has an overlay.redirect xattr",
                        abs.display()
                    )));
                }
                return Ok(Some(inode));
            }
            if opaque_above {
                return Ok(None);
            }
        }
        Ok(None)
    }
}
