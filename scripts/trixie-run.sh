#!/usr/bin/env bash
# trixie-run.sh HOSTDIR CMD... : runs CMD in the trixie chroot (scripts/setup-peers.sh) in a
# private mount namespace, with HOSTDIR bind-mounted at /data and the fixtures' OCI layouts
# ($STRATA_PEERS/oci) read-only at /peers. The host's network namespace is shared, so
# 127.0.0.1 registries are reachable.
set -euo pipefail
P=${STRATA_PEERS:-/var/tmp/strata-peers}
T=$P/trixie
[ -x "$T/usr/bin/skopeo" ] || { echo "no trixie chroot in $T: run scripts/setup-peers.sh" >&2; exit 1; }
HOSTDIR=$(realpath "$1"); shift
exec unshare -m --propagation private sh -c '
T=$1; H=$2; P=$3; shift 3
mount --bind "$T" "$T"
mount -t proc proc "$T/proc"
mount --rbind /sys "$T/sys"
mount --rbind /dev "$T/dev"
mount -t tmpfs tmpfs "$T/run"
mount -t tmpfs tmpfs "$T/tmp"
mount --bind "$H" "$T/data"
if [ -d "$P/oci" ]; then mkdir -p "$T/peers"; mount --bind -o ro "$P/oci" "$T/peers"; fi
cd "$T" && exec chroot "$T" "$@"' sh "$T" "$HOSTDIR" "$P" "$@"
