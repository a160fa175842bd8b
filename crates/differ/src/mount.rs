//! Private read-only overlay mounts that let the kernel compose layers for the double walk.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use crate::DiffError;

/// A read-only overlay mounted in a temporary directory; unmounted (lazily) when dropped.
#[derive(Debug)]
pub struct TempOverlay {
    mountpoint: PathBuf,
    _dir: tempfile::TempDir,
}

impl TempOverlay {
    /// Mounts `layers` (top-most first) read-only, with extra overlay `options` (e.g.
    /// `redirect_dir=follow,metacopy=on`). overlayfs needs two layers when there is no upper:
    /// a single layer gets an empty directory below it (so its whiteouts are still hidden).
    pub fn mount(layers: &[PathBuf], options: &[&str]) -> Result<TempOverlay, DiffError> {
        let dir = tempfile::Builder::new()
            .prefix("strata-diff-")
            .tempdir()
            .map_err(|source| DiffError::Io { path: std::env::temp_dir(), source })?;
        let mountpoint = dir.path().join("m");
        std::fs::create_dir(&mountpoint).map_err(crate::inode::io_err(&mountpoint))?;
        let mut layers = layers.to_vec();
        if layers.len() < 2 {
            let empty = dir.path().join("empty");
            std::fs::create_dir(&empty).map_err(crate::inode::io_err(&empty))?;
            layers.push(empty);
        }
        let mut data = b"lowerdir=".to_vec();
        for (i, layer) in layers.iter().enumerate() {
            if i > 0 {
                data.push(b':');
            }
            data.extend(escape_layer(layer));
        }
        for opt in options {
            data.push(b',');
            data.extend_from_slice(opt.as_bytes());
        }
        let data_os = std::ffi::OsStr::from_bytes(&data);
        nix::mount::mount(Some("overlay"), &mountpoint, Some("overlay"), MsFlags::MS_RDONLY, Some(data_os))
            .map_err(|errno| DiffError::Mount { options: String::from_utf8_lossy(&data).into_owned(), errno })?;
        Ok(TempOverlay { mountpoint, _dir: dir })
    }

    pub fn path(&self) -> &Path {
        &self.mountpoint
    }
}

impl Drop for TempOverlay {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.mountpoint, MntFlags::MNT_DETACH);
    }
}

/// Escapes a layer path for `lowerdir=`: the kernel's option parser splits on `,` and `:`
/// unless preceded by `\`.
fn escape_layer(p: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in p.as_os_str().as_bytes() {
        if matches!(b, b'\\' | b':' | b',') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}
