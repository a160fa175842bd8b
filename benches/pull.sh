#!/usr/bin/env bash
# benches/pull.sh: partial pulls of the debootstrap pair, strata vs podman 5.4, side by side
# in one run on one XFS (reflink=1), printed as a markdown table.
#
# Run as root from the repository, after `make peers` (the XFS mount, the debootstrap OCI
# layouts, scripts/setup-peers.sh's trixie chroot with skopeo 1.18 and podman 5.4) and
# `cargo build --release --bin strata`:
#
#     benches/pull.sh | tee /tmp/pull-bench.md
#
# A private docker-registry (access log on: every response's size is logged, which is how the
# bytes a peer fetched are counted) gets the pair twice as zstd:chunked: pushed by skopeo 1.18
# (containers/storage's chunks) and by `strata push` (FastCDC chunks). For each producer:
#   - strata: fresh store, pull a, then pull b (timed; bytes from the registry log and from
#     strata's JSON; physical bytes b adds from `strata df` and from statvfs);
#   - strata, b alone into a fresh store (the full pull of the same image);
#   - podman 5.4 (partial pulls on, storage on the same XFS): pull a, then b (timed, bytes
#     from the registry log, statvfs bytes added).
# Caches are warm (blobs are in the registry's page cache for everyone alike).
#
# "b after a" runs REPS times (b removed in between; median wall time, the other columns of
# the last run).
#
# Environment: STRATA_BENCH_REPS (default 3), STRATA, STRATA_BENCH_XFS (default $STRATA_PEERS/xfs), STRATA_BENCH_OCI_A/B
# (default $STRATA_PEERS/oci/rootfs-{a,b}, tag latest), STRATA_BENCH_KEEP=1 keeps the scratch.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$REPO/benches/lib.sh"
PEERS=${STRATA_PEERS:-/var/tmp/strata-peers}
STRATA=${STRATA:-$REPO/target/release/strata}
XFS=${STRATA_BENCH_XFS:-$PEERS/xfs}
OCI_A=${STRATA_BENCH_OCI_A:-$PEERS/oci/rootfs-a}
OCI_B=${STRATA_BENCH_OCI_B:-$PEERS/oci/rootfs-b}
TRIXIE=$REPO/scripts/trixie-run.sh
REPS=${STRATA_BENCH_REPS:-3}
W=$XFS/strata-pull-bench

die() { echo "pull.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root"
[ -x "$STRATA" ] || die "no $STRATA: cargo build --release --bin strata"
command -v docker-registry >/dev/null || die "no docker-registry (make deps)"
xfs_info "$XFS" 2>/dev/null | grep -q 'reflink=1' || die "$XFS is not an XFS with reflink=1 (make peers)"
for l in "$OCI_A" "$OCI_B"; do [ -f "$l/index.json" ] || die "no OCI layout $l (make peers)"; done

mb3() { awk -v b="$1" 'BEGIN { printf "%.3f", b / 1e6 }'; }
used() {
    local blocks free bsize
    sync -f "$XFS"
    sleep 0.5 # XFS frees and accounts blocks in the background; let it settle
    read -r blocks free bsize < <(stat -f -c '%b %f %S' "$XFS")
    echo $(((blocks - free) * bsize))
}
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f\n", b - a }'; }
log_len() { stat -c %s "$W/registry.log"; }
# Bytes the registry sent for blob GETs of repository $1 after log offset $2.
blob_bytes() {
    tail -c +$(($2 + 1)) "$W/registry.log" | grep -F "\"GET /v2/$1/blobs/" |
        sed -n 's/.*HTTP\/1\.1" [0-9]* \([0-9]*\) .*/\1/p' | awk '{ s += $1 } END { print s + 0 }'
}
trixie() { "$TRIXIE" "$W/data" env PODMAN_IGNORE_CGROUPSV1_WARNING=1 CONTAINERS_STORAGE_CONF=/data/storage.conf "$@"; }

REG_PID=
cleanup() {
    [ -z "$REG_PID" ] || kill "$REG_PID" 2>/dev/null || true
    for m in "$W"/*/containers/*/merged; do umount "$m" 2>/dev/null || true; done
    if [ -d "$W/data/podman" ]; then trixie podman system reset -f >/dev/null 2>&1 || true; fi
    [ -n "${STRATA_BENCH_KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT
cleanup
mkdir -p "$W/data"

start_registry "$W" info

# The images: skopeo 1.18 compresses the layouts' layers to zstd:chunked; strata pushes its
# own zstd:chunked from a producer store.
cp -a "$OCI_A" "$W/data/oci-a"
cp -a "$OCI_B" "$W/data/oci-b"
for x in a b; do
    trixie skopeo copy -q --dest-tls-verify=false --dest-compress-format=zstd:chunked --format=oci \
        "oci:/data/oci-$x:latest" "docker://$REG/skopeo/rootfs-$x:t"
    "$STRATA" --root "$W/producer" import "oci:$W/data/oci-$x:latest" --name "$x" >/dev/null
    "$STRATA" --root "$W/producer" push "$x" "$REG/strata/rootfs-$x:t" --format zstd:chunked --plain-http >/dev/null
done
rm -rf "$W/producer"
blob_size() { curl -s -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REG/v2/$1/manifests/t" | jq '[.layers[].size] | add'; }

cat >"$W/data/storage.conf" <<'EOF'
[storage]
driver = "overlay"
graphroot = "/data/podman"
runroot = "/data/podman-run"
[storage.options]
pull_options = {enable_partial_images = "true", use_hard_links = "false"}
EOF

echo "## Pull: the debootstrap pair (b after a), strata vs podman 5.4"
echo
echo "strata $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?') (release build), $(nproc) cores," \
    "load average at start $(cut -d' ' -f1-3 /proc/loadavg), XFS reflink=1 loop mount, docker-registry on" \
    "127.0.0.1, warm page cache; \`benches/pull.sh\` on $(date -u +%Y-%m-%d)."
echo
echo "| layers made by | puller | b's blob MB | fetched for b MB | of the blob | wall s (median of $REPS for b after a) | physical added MiB (statvfs) |"
echo "|---|---|---:|---:|---:|---:|---:|"
for P in skopeo strata; do
    SIZE=$(blob_size "$P/rootfs-b")
    # strata: a then b.
    S=$W/store-$P
    "$STRATA" --root "$S" pull "$REG/$P/rootfs-a:t" --name a --plain-http >/dev/null
    : >"$W/walls.txt"
    for r in $(seq "$REPS"); do
        [ "$r" = 1 ] || "$STRATA" --root "$S" rmi b >/dev/null
        U0=$(used) M=$(log_len) T0=$(now)
        "$STRATA" --root "$S" pull "$REG/$P/rootfs-b:t" --name b --plain-http --json >"$W/pull-b.json"
        T1=$(now)
        F=$(blob_bytes "$P/rootfs-b" "$M") U1=$(used)
        secs "$T0" "$T1" >>"$W/walls.txt"
    done
    echo "| $P | strata, b after a | $(mb "$SIZE") | $(mb3 "$F") | $(ratio "$F" "$SIZE") | $(median <"$W/walls.txt") | $(mib $((U1 - U0))) |"
    jq -c "{bytes_fetched, bytes_reused, bytes_reflinked, bytes_written, partial}" "$W/pull-b.json" >"$W/pull-b-$P.txt"
    rm -rf "$S"
    # strata: b alone.
    S=$W/full-$P
    U0=$(used) M=$(log_len) T0=$(now)
    "$STRATA" --root "$S" pull "$REG/$P/rootfs-b:t" --name b --plain-http >/dev/null
    T1=$(now)
    F=$(blob_bytes "$P/rootfs-b" "$M") U1=$(used)
    echo "| $P | strata, b alone | $(mb "$SIZE") | $(mb3 "$F") | $(ratio "$F" "$SIZE") | $(secs "$T0" "$T1") | $(mib $((U1 - U0))) |"
    rm -rf "$S"
    # podman: a then b.
    trixie podman pull -q --tls-verify=false "$REG/$P/rootfs-a:t" >/dev/null
    : >"$W/walls.txt"
    for r in $(seq "$REPS"); do
        [ "$r" = 1 ] || trixie podman rmi "$REG/$P/rootfs-b:t" >/dev/null
        U0=$(used) M=$(log_len) T0=$(now)
        trixie podman pull -q --tls-verify=false "$REG/$P/rootfs-b:t" >/dev/null
        T1=$(now)
        F=$(blob_bytes "$P/rootfs-b" "$M") U1=$(used)
        secs "$T0" "$T1" >>"$W/walls.txt"
    done
    echo "| $P | podman 5.4, b after a | $(mb "$SIZE") | $(mb3 "$F") | $(ratio "$F" "$SIZE") | $(median <"$W/walls.txt") | $(mib $((U1 - U0))) |"
    trixie podman system reset -f >/dev/null 2>&1
    rm -rf "$W/data/podman" "$W/data/podman-run"
done
echo
echo "strata's own accounting of b after a (JSON):"
echo
for P in skopeo strata; do echo "    $P: $(cat "$W/pull-b-$P.txt")"; done
echo
echo "Reference (brief §6): podman +66 MiB physical for b after a, casync with seed a +98 MiB."
