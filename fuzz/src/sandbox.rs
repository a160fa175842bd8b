//! Where the extraction target writes: a fresh tmpfs (`nodev,nosuid`) mounted in a private
//! mount namespace of the fuzzing process when it runs as root (so nothing it creates is
//! visible to, or usable from, the rest of the machine, and it vanishes with the process),
//! else a plain directory under `/dev/shm` or the temp dir.
//!
//! The base directory holds `root/` (recreated for every input) and `sentinel/`, a sibling
//! that layers try to reach through `..`-free tricks; [`Sandbox::check`] proves nothing
//! outside `root/` changed.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};

#[derive(Debug)]
pub struct Sandbox {
    pub base: PathBuf,
    pub root: PathBuf,
    sentinel: PathBuf,
    snapshot: Vec<String>,
}

fn tmp_parent() -> PathBuf {
    if let Some(p) = std::env::var_os("STRATA_FUZZ_TMP") {
        return p.into();
    }
    if Path::new("/dev/shm").is_dir() { "/dev/shm".into() } else { std::env::temp_dir() }
}

/// Removes empty base directories left by earlier runs whose process is gone.
fn sweep(parent: &Path) {
    let Ok(dir) = fs::read_dir(parent) else { return };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("strata-fuzz-apply-")
            && !Path::new("/proc").join(pid).exists()
        {
            let _ = fs::remove_dir(e.path());
        }
    }
}

fn private_tmpfs(base: &Path) -> bool {
    if !nix::unistd::geteuid().is_root() || unshare(CloneFlags::CLONE_NEWNS).is_err() {
        return false;
    }
    let private = mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>);
    private.is_ok()
        && mount(
            Some("tmpfs"),
            base,
            Some("tmpfs"),
            MsFlags::MS_NODEV | MsFlags::MS_NOSUID,
            Some("size=512m,mode=0700"),
        )
        .is_ok()
}

/// Lists `dir` recursively with the metadata an escape would change.
fn snapshot(dir: &Path, out: &mut Vec<String>) {
    let mut entries: Vec<_> = fs::read_dir(dir).expect("sandbox readable").flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let m = fs::symlink_metadata(e.path()).expect("sandbox entry stat");
        out.push(format!(
            "{} mode={:o} uid={} gid={} nlink={} size={} mtime={}.{} xattrs={:?}",
            e.path().display(),
            m.mode(),
            m.uid(),
            m.gid(),
            m.nlink(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            xattr::list(e.path()).map(|l| l.collect::<Vec<_>>()).unwrap_or_default(),
        ));
        if m.is_dir() {
            snapshot(&e.path(), out);
        }
    }
}

fn open_up(dir: &Path) {
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            open_up(&e.path());
        }
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let parent = tmp_parent();
        sweep(&parent);
        let base = parent.join(format!("strata-fuzz-apply-{}", std::process::id()));
        fs::create_dir_all(&base).expect("create the sandbox");
        let mounted = private_tmpfs(&base);
        eprintln!("layer_apply sandbox: {} ({})", base.display(), if mounted { "private tmpfs" } else { "directory" });
        let sentinel = base.join("sentinel");
        fs::create_dir_all(sentinel.join("dir")).unwrap();
        fs::write(sentinel.join("file"), b"sentinel").unwrap();
        let mut s = Sandbox { root: base.join("root"), base, sentinel, snapshot: Vec::new() };
        s.snapshot = s.outside();
        s
    }

    /// Absolute path of the sentinel directory.
    pub fn sentinel(&self) -> &Path {
        &self.sentinel
    }

    /// Everything in the base except `root/`.
    fn outside(&self) -> Vec<String> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.base).unwrap().flatten() {
            if e.path() != self.root && e.path() != self.sentinel {
                out.push(format!("unexpected {}", e.path().display()));
            }
        }
        let m = fs::symlink_metadata(&self.sentinel).unwrap();
        out.push(format!("sentinel mode={:o} nlink={} mtime={}.{}", m.mode(), m.nlink(), m.mtime(), m.mtime_nsec()));
        snapshot(&self.sentinel, &mut out);
        out
    }

    /// A fresh, empty `root/`.
    pub fn reset(&self) {
        if self.root.exists() && fs::remove_dir_all(&self.root).is_err() {
            // Not root: directories the layer made unreadable must be opened up first.
            open_up(&self.root);
            fs::remove_dir_all(&self.root).expect("remove the extraction root");
        }
        fs::create_dir(&self.root).unwrap();
    }

    /// Panics if anything outside `root/` changed.
    pub fn check(&self) {
        let now = self.outside();
        assert_eq!(now, self.snapshot, "the layer changed something outside the extraction root");
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}
