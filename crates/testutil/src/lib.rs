//! Fixtures for tests that need real components.
//!
//! Tests that need root or an external tool call [`require_root`] / [`require_tool`] first.
//! Without the capability they are skipped with a message, unless `STRATA_TEST_PRIVILEGED=1`
//! is set (as `.ci/run` does), in which case the missing capability fails the test: CI never
//! silently skips.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod peers;
pub use peers::{Peers, Rootfs, peers_dir, scripts_dir};

/// True under `STRATA_TEST_PRIVILEGED=1`: a missing capability or fixture fails the test.
pub fn strict() -> bool {
    std::env::var("STRATA_TEST_PRIVILEGED").is_ok_and(|v| v == "1")
}

/// Returns false (after printing why) when the test should be skipped; panics in strict mode.
pub fn require_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(!strict(), "STRATA_TEST_PRIVILEGED=1 but the test is not running as root");
    eprintln!("skipped: needs root (set STRATA_TEST_PRIVILEGED=1 to make this a failure)");
    false
}

/// Returns false (after printing why) when `tool` is not on PATH; panics in strict mode.
pub fn require_tool(tool: &str) -> bool {
    let found =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file())).unwrap_or(false);
    if found {
        return true;
    }
    assert!(!strict(), "STRATA_TEST_PRIVILEGED=1 but {tool} is not installed (make test installs it)");
    eprintln!("skipped: needs {tool} (set STRATA_TEST_PRIVILEGED=1 to make this a failure)");
    false
}

/// Runs a command, panicking with its stderr when it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A filesystem image loop-mounted in a temporary directory; unmounted and deleted on drop.
#[derive(Debug)]
pub struct LoopMount {
    dir: tempfile::TempDir,
    mountpoint: PathBuf,
}

impl LoopMount {
    /// An XFS with reflinks (`mkfs.xfs -m reflink=1`) of `size_mib` MiB (sparse image).
    pub fn xfs(size_mib: u64) -> LoopMount {
        Self::make(size_mib, &["mkfs.xfs", "-q", "-f", "-m", "reflink=1"])
    }

    /// An ext4 (no reflinks) of `size_mib` MiB.
    pub fn ext4(size_mib: u64) -> LoopMount {
        Self::make(size_mib, &["mkfs.ext4", "-q", "-F"])
    }

    /// A btrfs of `size_mib` MiB (at least 128).
    pub fn btrfs(size_mib: u64) -> LoopMount {
        Self::make(size_mib.max(128), &["mkfs.btrfs", "-q", "-f"])
    }

    fn make(size_mib: u64, mkfs: &[&str]) -> LoopMount {
        let dir = tempfile::Builder::new().prefix("strata-loop-").tempdir_in(scratch_base()).expect("tempdir");
        let img = dir.path().join("fs.img");
        let f = std::fs::File::create(&img).expect("create image");
        f.set_len(size_mib << 20).expect("size image");
        drop(f);
        run(Command::new(mkfs[0]).args(&mkfs[1..]).arg(&img));
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir(&mountpoint).unwrap();
        run(Command::new("mount").arg("-o").arg("loop").arg(&img).arg(&mountpoint));
        LoopMount { dir, mountpoint }
    }

    pub fn path(&self) -> &Path {
        &self.mountpoint
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mountpoint).status();
        let _ = &self.dir;
    }
}

/// Where scratch directories go: `$STRATA_TEST_TMP` or the system temp dir.
pub fn scratch_base() -> PathBuf {
    std::env::var_os("STRATA_TEST_TMP").map(PathBuf::from).unwrap_or_else(std::env::temp_dir)
}

/// An overlay mount; unmounted on drop.
#[derive(Debug)]
pub struct OverlayMount {
    merged: PathBuf,
}

impl OverlayMount {
    /// Mounts `lowers` (top-most first), `upper`, `work` at `merged` with extra `options`
    /// (e.g. `"redirect_dir=on"`). All paths must be absolute.
    pub fn new(lowers: &[&Path], upper: &Path, work: &Path, merged: &Path, options: &str) -> OverlayMount {
        let lower = lowers.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":");
        let mut opts = format!("lowerdir={lower},upperdir={},workdir={}", upper.display(), work.display());
        if !options.is_empty() {
            opts.push(',');
            opts.push_str(options);
        }
        run(Command::new("mount").args(["-t", "overlay", "overlay", "-o", &opts]).arg(merged));
        OverlayMount { merged: merged.to_path_buf() }
    }

    pub fn merged(&self) -> &Path {
        &self.merged
    }

    /// Unmounts now (so the upperdir can be diffed in a quiescent state).
    pub fn unmount(self) {}
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.merged).status();
    }
}

/// A `docker-registry` (CNCF distribution) process serving on 127.0.0.1 at a free port,
/// storing blobs in a temporary directory; killed on drop.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        Self::start_with_auth("")
    }

    /// A registry that requires HTTP Basic auth against an htpasswd (bcrypt) file.
    pub fn start_with_htpasswd(htpasswd: &Path) -> Registry {
        Self::start_with_auth(&format!("auth:\n  htpasswd: {{realm: strata-test, path: {}}}\n", htpasswd.display()))
    }

    fn start_with_auth(auth_yaml: &str) -> Registry {
        let dir = tempfile::Builder::new().prefix("strata-registry-").tempdir_in(scratch_base()).unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\nhttp: {{addr: {addr}}}\n{auth_yaml}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let reg = Registry { child, addr, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&reg.addr).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start on {}", reg.addr);
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The registry's log (responses and their sizes).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
