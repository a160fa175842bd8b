//! The fixtures `scripts/setup-peers.sh` prepares (`make peers`, which `make test` runs):
//! the debootstrap pair, their layer tars and OCI layouts, and the trixie chroot with
//! skopeo 1.18 and podman 5.4. They live in `$STRATA_PEERS` (default `/var/tmp/strata-peers`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::strict;

/// The repository's `scripts/` directory.
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts")
}

/// Where the fixtures live.
pub fn peers_dir() -> PathBuf {
    std::env::var_os("STRATA_PEERS").map(PathBuf::from).unwrap_or_else(|| "/var/tmp/strata-peers".into())
}

/// The prepared fixtures.
#[derive(Clone, Debug)]
pub struct Peers {
    dir: PathBuf,
}

/// One of the debootstrap pair: `A` (minbase bookworm) or `B` (the same plus python3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rootfs {
    A,
    B,
}

impl Rootfs {
    pub fn name(self) -> &'static str {
        match self {
            Rootfs::A => "rootfs-a",
            Rootfs::B => "rootfs-b",
        }
    }
}

impl Peers {
    /// The fixtures, when `scripts/setup-peers.sh` has prepared them all. Otherwise the test
    /// is skipped (`None`, after saying why), or fails under `STRATA_TEST_PRIVILEGED=1`.
    pub fn require() -> Option<Peers> {
        let p = Peers { dir: peers_dir() };
        let wanted = [
            p.trixie().join("usr/bin/skopeo"),
            p.trixie().join("usr/bin/podman"),
            p.rootfs(Rootfs::A).join("bin/sh"),
            p.rootfs(Rootfs::B).join("usr/bin/python3"),
            p.tar(Rootfs::A),
            p.tar(Rootfs::B),
            p.oci(Rootfs::A).join("index.json"),
            p.oci(Rootfs::B).join("index.json"),
        ];
        if let Some(missing) = wanted.iter().find(|f| !f.exists()) {
            let why =
                format!("{} is missing: run scripts/setup-peers.sh (make peers; make test runs it)", missing.display());
            assert!(!strict(), "STRATA_TEST_PRIVILEGED=1 but {why}");
            eprintln!("skipped: {why}");
            return None;
        }
        Some(p)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The debootstrap tree.
    pub fn rootfs(&self, r: Rootfs) -> PathBuf {
        self.dir.join(r.name())
    }

    /// Its layer tar (GNU tar, numeric owners, xattrs, `./dev/*` excluded).
    pub fn tar(&self, r: Rootfs) -> PathBuf {
        self.dir.join("tars").join(format!("{}.tar", r.name()))
    }

    /// A single-layer gzip OCI image layout of the tar, tag `latest`.
    pub fn oci(&self, r: Rootfs) -> PathBuf {
        self.dir.join("oci").join(r.name())
    }

    /// The trixie chroot (skopeo 1.18, podman 5.4).
    pub fn trixie(&self) -> PathBuf {
        self.dir.join("trixie")
    }

    /// Runs `sh -c script` in the trixie chroot, in a private mount namespace, with `hostdir`
    /// at `/data` (`scripts/trixie-run.sh`). The host's network namespace is shared.
    pub fn trixie_sh(&self, hostdir: &Path, script: &str) -> Output {
        Command::new(scripts_dir().join("trixie-run.sh"))
            .env("STRATA_PEERS", &self.dir)
            .arg(hostdir)
            .args(["sh", "-c", script])
            .output()
            .expect("run scripts/trixie-run.sh")
    }

    /// [`Peers::trixie_sh`], panicking with the output when the script fails.
    pub fn trixie_ok(&self, hostdir: &Path, script: &str) -> String {
        let out = self.trixie_sh(hostdir, script);
        assert!(
            out.status.success(),
            "in the trixie chroot: {script}\nfailed: {}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// skopeo 1.18 (containers/storage's compressor) copies the fixture layout of `r` into
    /// a new OCI layout `dst/layout` (tag `t`) as zstd:chunked; returns the layout's path.
    pub fn skopeo_zstd_chunked(&self, r: Rootfs, dst: &Path) -> PathBuf {
        self.trixie_ok(
            dst,
            &format!(
                "mkdir -p /var/lib/containers && mount -t tmpfs tmpfs /var/lib/containers && \
                 skopeo copy --quiet --dest-compress-format zstd:chunked oci:/peers/{}:latest oci:/data/layout:t",
                r.name()
            ),
        );
        dst.join("layout")
    }
}
