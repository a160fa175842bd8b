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
        let data = overlay_options(&layers, None, options)?;
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

/// Escapes a path for overlay's options: the kernel's option parser splits on `,` and `:`
/// unless preceded by `\`.
fn escape(p: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in p.as_os_str().as_bytes() {
        if matches!(b, b'\\' | b':' | b',') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// The longest mount data the kernel takes (one page, with its terminating zero).
pub const MAX_MOUNT_DATA: usize = 4095;

/// Overlay mount data: `lowerdir=` (top-most first), `upperdir=`/`workdir=` when `upper`
/// is `(upper, work)`, then `extra` options; paths escaped. An error when it exceeds the
/// kernel's page ([`MAX_MOUNT_DATA`]).
pub fn overlay_options(
    lowers: &[PathBuf],
    upper: Option<(&Path, &Path)>,
    extra: &[&str],
) -> Result<Vec<u8>, DiffError> {
    let mut data = b"lowerdir=".to_vec();
    for (i, layer) in lowers.iter().enumerate() {
        if i > 0 {
            data.push(b':');
        }
        data.extend(escape(layer));
    }
    if let Some((u, w)) = upper {
        data.extend_from_slice(b",upperdir=");
        data.extend(escape(u));
        data.extend_from_slice(b",workdir=");
        data.extend(escape(w));
    }
    for opt in extra {
        data.push(b',');
        data.extend_from_slice(opt.as_bytes());
    }
    if data.len() > MAX_MOUNT_DATA {
        return Err(DiffError::MountOptionsTooLong { layers: lowers.len(), bytes: data.len() });
    }
    Ok(data)
}
