//! Pins: "a live operation is about to use these layers" (see `docs/locking.md`).
//!
//! A pin is a line `sha256:<hex>` in `ROOT/pins/<op>-<pid>-<n>.pin`, a file the operation
//! holds an exclusive `flock` on while it runs; the kernel releases it when the process dies,
//! so the pins of a dead operation stop counting by themselves. The owner writes the lines, in
//! the `pin` transaction that also answers which of the layers exist: that transaction and
//! gc's mark are serialized, so either gc saw the pin, or the answer says the layer is gone.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{Flock, FlockArg};
use strata_types::{ImageName, LayerId, Sha256Digest};

use crate::records::ImageRecord;

use crate::error::IoContext;
use crate::owner::{Owner, RootPath};
use crate::paths::StorePaths;
use crate::{StoreError, files};

static SEQ: AtomicU64 = AtomicU64::new(0);

/// The pin file of one operation; removed on drop (which also ends the pins).
#[derive(Debug)]
pub(crate) struct Pins {
    path: PathBuf,
    rel: RootPath,
    _lock: Flock<File>,
}

impl Pins {
    pub(crate) fn new(paths: &StorePaths, op: &str) -> Result<Pins, StoreError> {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let path = paths.pins().join(format!("{op}-{}-{n}.pin", std::process::id()));
        let f = File::options().append(true).create(true).mode(files::PRIVATE_FILE).open(&path).at(&path)?;
        let lock = Flock::lock(f, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| StoreError::io(&path, std::io::Error::from(e)))?;
        let rel = RootPath::of(paths.root(), &path)?;
        Ok(Pins { path, rel, _lock: lock })
    }

    pub(crate) fn rel(&self) -> &RootPath {
        &self.rel
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Every layer pinned by a live operation (but the one whose pin file is `except`). Pin
/// files whose lock is free belong to dead operations and are removed.
pub(crate) fn pinned(paths: &StorePaths, except: Option<&RootPath>) -> Result<HashSet<LayerId>, StoreError> {
    let except = except.map(|e| e.resolve(paths.root()));
    let dir = paths.pins();
    let mut out = HashSet::new();
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(StoreError::io(&dir, e)),
    };
    for ent in rd {
        let p = ent.at(&dir)?.path();
        if except.as_ref() == Some(&p) {
            continue;
        }
        let Ok(f) = File::open(&p) else { continue };
        match Flock::lock(f, FlockArg::LockSharedNonblock) {
            Ok(_free) => {
                // Nobody holds it: a dead operation's pins.
                let _ = fs::remove_file(&p);
            }
            Err((f, _held)) => {
                for line in BufReader::new(f).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(d) = line.trim().parse::<Sha256Digest>() {
                        out.insert(LayerId(d));
                    }
                }
            }
        }
    }
    Ok(out)
}

impl Owner {
    /// Appends `layers` to the pin file `file` (one write of whole lines).
    fn write_pins(&self, file: &RootPath, layers: &[LayerId]) -> Result<(), StoreError> {
        let path = file.resolve(self.paths.root());
        let mut text = String::with_capacity(layers.len() * 72);
        for l in layers {
            text.push_str(&l.0.to_string());
            text.push('\n');
        }
        let mut f = File::options()
            .append(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        f.write_all(text.as_bytes()).at(&path)
    }

    /// The `pin` transaction: pins `layers` for the operation holding `file`, and answers
    /// which of them exist now (those are kept until the operation ends).
    pub(crate) fn pin(&self, file: &RootPath, layers: &[LayerId]) -> Result<Vec<bool>, StoreError> {
        self.write_pins(file, layers)?;
        layers.iter().map(|l| Ok(self.layer(l)?.is_some())).collect()
    }

    /// The `pin_images` transaction: pins the layers of `images` as they are now (an error
    /// when an image or one of its layers is missing); returns the images' records.
    pub(crate) fn pin_images(&self, file: &RootPath, images: &[ImageName]) -> Result<Vec<ImageRecord>, StoreError> {
        let records = images.iter().map(|n| crate::store::image(&self.index, n)).collect::<Result<Vec<_>, _>>()?;
        let layers: Vec<LayerId> = records.iter().flat_map(|r| r.layers.iter().copied()).collect();
        self.write_pins(file, &layers)?;
        for l in &layers {
            if self.layer(l)?.is_none() {
                return Err(StoreError::MissingLayer(*l));
            }
        }
        Ok(records)
    }
}
