#!/usr/bin/env bash
# benches/push.sh: push of the debootstrap b image in each format, strata vs skopeo 1.18.
#
# Run as root from the repository after `make peers` and `cargo build --release --bin strata`:
#
#     benches/push.sh | tee /tmp/push-bench.md
#
# b (the gzip OCI layout rootfs-b) is imported into a fresh store on the XFS; each format is
# pushed to its own repository of a private docker-registry on 127.0.0.1 (so no blob is
# already there). skopeo 1.18 pushes the same image, given as strata's uncompressed tar
# export, with --dest-compress-format gzip and zstd:chunked: containers/storage's
# zstd:chunked push is the slow one strata's must not resemble.
#
# Environment: STRATA, STRATA_BENCH_XFS (default $STRATA_PEERS/xfs), STRATA_BENCH_OCI_B.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$REPO/benches/lib.sh"
PEERS=${STRATA_PEERS:-/var/tmp/strata-peers}
STRATA=${STRATA:-$REPO/target/release/strata}
XFS=${STRATA_BENCH_XFS:-$PEERS/xfs}
OCI_B=${STRATA_BENCH_OCI_B:-$PEERS/oci/rootfs-b}
TRIXIE=$REPO/scripts/trixie-run.sh
W=$XFS/strata-push-bench

die() { echo "push.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root"
[ -x "$STRATA" ] || die "no $STRATA: cargo build --release --bin strata"
[ -f "$OCI_B/index.json" ] || die "no OCI layout $OCI_B (make peers)"

REG_PID=
cleanup() {
    [ -z "$REG_PID" ] || kill "$REG_PID" 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT
cleanup
mkdir -p "$W/data"

start_registry "$W" error

S=$W/store
"$STRATA" --root "$S" import "oci:$OCI_B:latest" --name b >/dev/null
"$STRATA" --root "$S" export b "oci:$W/data/tar:v1" --format tar >/dev/null

timed() {
    /usr/bin/time -f '%e %U %S' -o "$W/time.txt" "$@" >"$W/out.json"
    read -r WALL u s <"$W/time.txt"
    CPU=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
}

echo "## Push of b (267.4 MB tar), strata vs skopeo 1.18"
echo
echo "strata $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?') (release build), $(nproc) cores," \
    "load average at start $(cut -d' ' -f1-3 /proc/loadavg), docker-registry on 127.0.0.1;" \
    "\`benches/push.sh\` on $(date -u +%Y-%m-%d)."
echo
echo "| pusher | format | wall s | CPU s | MB uploaded |"
echo "|---|---|---:|---:|---:|"
for f in tar+gzip tar+zstd zstd:chunked; do
    repo=strata/$(echo "$f" | tr '+:' '--')
    timed "$STRATA" --root "$S" push b "$REG/$repo:t" --format "$f" --plain-http --json
    echo "| strata push | $f | $WALL | $CPU | $(jq '.bytes_uploaded / 1e6 | . * 10 | round / 10' "$W/out.json") |"
done
for f in gzip zstd:chunked; do
    repo=skopeo/$(echo "$f" | tr '+:' '--')
    timed "$TRIXIE" "$W/data" sh -c "mkdir -p /var/lib/containers && mount -t tmpfs tmpfs /var/lib/containers && \
        exec skopeo copy -q --dest-tls-verify=false --dest-compress-format=$f --format=oci oci:/data/tar:v1 docker://$REG/$repo:t"
    echo "| skopeo copy | $f | $WALL | $CPU | - |"
done
