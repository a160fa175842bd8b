#!/usr/bin/env bash
# Prepares the peers the interoperability tests compare against: a Debian trixie chroot with
# skopeo 1.18 and podman 5.4 (bookworm's skopeo 1.9 writes an obsolete zstd:chunked without
# tar-split). Idempotent; the first run takes a few minutes (debootstrap from the Debian mirror).
#
#   STRATA_PEERS   where the chroot lives (default /var/tmp/strata-peers)
#
# Run a command inside with scripts/trixie-run.sh HOSTDIR CMD... (HOSTDIR appears as /data).
set -euo pipefail
P=${STRATA_PEERS:-/var/tmp/strata-peers}
T=$P/trixie
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if [ "$(id -u)" != 0 ]; then echo "setup-peers.sh needs root (debootstrap, mounts)" >&2; exit 1; fi
mkdir -p "$P"
if [ ! -x "$T/usr/bin/skopeo" ] || [ ! -x "$T/usr/bin/podman" ]; then
  echo "creating a trixie chroot with skopeo and podman in $T (once; a few minutes)"
  rm -rf "$T.tmp"
  debootstrap --variant=minbase --include=skopeo,podman,runc,ca-certificates trixie "$T.tmp" "$MIRROR" >"$P/debootstrap.log" 2>&1 ||
    { echo "debootstrap failed, see $P/debootstrap.log" >&2; exit 1; }
  mv "$T.tmp" "$T"
fi
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
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOC
"$T/usr/bin/skopeo" --version >/dev/null 2>&1 || chroot "$T" skopeo --version >/dev/null
[ -x "$T/usr/bin/podman" ] || { echo "podman missing in $T" >&2; exit 1; }
echo "peers ready: $(chroot "$T" skopeo --version), podman in $T"
