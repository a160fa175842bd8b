#!/usr/bin/env bash
# Prepares every fixture the tests and benchmarks use, in the project's own directory
# (default /var/tmp/strata-peers, `$STRATA_PEERS`). Idempotent; the first run takes several
# minutes (debootstrap from the Debian mirror), later runs a second.
#
#   trixie/               a Debian trixie chroot with skopeo 1.18 and podman 5.4 (bookworm's
#                         skopeo 1.9 writes an obsolete zstd:chunked without tar-split); run a
#                         command inside with scripts/trixie-run.sh HOSTDIR CMD...
#   rootfs-a/, rootfs-b/  debootstrap minbase bookworm, and the same plus python3 (the
#                         "debootstrap pair": 79% of b's bytes are files of a)
#   tars/rootfs-{a,b}.tar their layer tars (GNU tar, numeric owners, xattrs)
#   oci/rootfs-{a,b}/     single-layer gzip OCI image layouts of those tars, tag latest
#   xfs/                  with --xfs (benchmarks): an 8 GiB XFS with reflinks, loop-mounted
#
# Each piece is built in a temporary name and renamed when complete, so an interrupted run
# never leaves a half-made fixture that a later run would trust.
set -euo pipefail
P=${STRATA_PEERS:-/var/tmp/strata-peers}
T=$P/trixie
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
here=$(cd "$(dirname "$0")" && pwd)
if [ "$(id -u)" != 0 ]; then echo "setup-peers.sh needs root (debootstrap, mounts)" >&2; exit 1; fi
mkdir -p "$P" "$P/debs"

# debootstrap SUITE DEST [--include=...]: into DEST.tmp, then renamed.
strap() {
  local suite=$1 dest=$2; shift 2
  [ -x "$dest/bin/sh" ] && return 0
  echo "debootstrap $suite into $dest (once; a few minutes)"
  rm -rf "$dest.tmp"
  debootstrap --variant=minbase --cache-dir="$P/debs" "$@" "$suite" "$dest.tmp" "$MIRROR" \
    >"$dest.log" 2>&1 || { echo "debootstrap failed, see $dest.log" >&2; exit 1; }
  mv "$dest.tmp" "$dest"
}

strap trixie "$T" --include=skopeo,podman,runc,ca-certificates
[ -x "$T/usr/bin/skopeo" ] && [ -x "$T/usr/bin/podman" ] || { echo "skopeo/podman missing in $T" >&2; exit 1; }
mkdir -p "$T/data" "$T/etc/containers"
# Loopback registries over plain http.
cat >"$T/etc/containers/registries.conf" <<'EOC'
unqualified-search-registries = []
[[registry]]
location = "127.0.0.1"
insecure = true
EOC
cat >"$T/etc/containers/containers.conf" <<'EOC'
[containers]
netns = "none"
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOC
[ -e "$T/etc/hosts" ] || printf '127.0.0.1 localhost\n' >"$T/etc/hosts"

# The debootstrap pair (bookworm minbase; b adds python3).
strap bookworm "$P/rootfs-a"
strap bookworm "$P/rootfs-b" --include=python3
mkdir -p "$P/tars" "$P/oci"
for x in a b; do
  tar=$P/tars/rootfs-$x.tar
  if [ ! -s "$tar" ]; then
    (cd "$P/rootfs-$x" && tar --numeric-owner --xattrs --exclude='./dev/*' -cf "$tar.tmp" .)
    mv "$tar.tmp" "$tar"
  fi
  layout=$P/oci/rootfs-$x
  if [ ! -f "$layout/index.json" ]; then
    rm -rf "$layout.tmp"
    python3 "$here/make-layout.py" "$layout.tmp" latest "$tar"
    mv "$layout.tmp" "$layout"
  fi
done
if [ "${1:-}" = --xfs ]; then
  [ -f "$P/xfs.img" ] || { truncate -s 8G "$P/xfs.img.tmp"; mkfs.xfs -q -m reflink=1 "$P/xfs.img.tmp"; mv "$P/xfs.img.tmp" "$P/xfs.img"; }
  mkdir -p "$P/xfs"
  mountpoint -q "$P/xfs" || mount -o loop "$P/xfs.img" "$P/xfs"
fi
ver() { dpkg-query --admindir="$T/var/lib/dpkg" -W -f '${Version}' "$1"; }
echo "peers ready in $P: skopeo $(ver skopeo), podman $(ver podman)"
