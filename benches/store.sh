#!/usr/bin/env bash
# benches/store.sh: store benchmarks (import, commit, export), printed as markdown tables.
#
# Run as root from the repository, after `make peers` (the XFS mount, the debootstrap OCI
# layouts and the trixie chroot with skopeo 1.18) and `cargo build --release --bin strata`:
#
#     benches/store.sh | tee /tmp/store-bench.md
#
# Everything happens on the XFS (reflink=1) at $STRATA_BENCH_XFS (default $STRATA_PEERS/xfs),
# in one scratch directory that is removed at the end (STRATA_BENCH_KEEP=1 keeps it):
#
# 1. import: rootfs-a then rootfs-b (gzip OCI layouts of the debootstrap pair) into a fresh
#    store; seconds, and the space b adds: `strata df` physical_bytes (layer files, shared
#    extents counted once, FIEMAP) and statvfs (everything: index, tar-split, metadata; other
#    users of the filesystem show up here too), against b's logical size.
# 2. commit on the imported b: 10 files changed (appended to; REPS containers, median), 1 GiB
#    of new files (256 x 4 MiB of random data, synced before the commit), and a chmod-only
#    copy-up of that 1 GiB (a container on the 1 GiB image, `chmod` of every file).
# 3. export of b in every format (wall, CPU = user + sys, MB/s of uncompressed tar), and
#    skopeo 1.18 (`scripts/trixie-run.sh`) compressing the same image, given as strata's
#    uncompressed tar export, to zstd:chunked and to zstd.
#
# Caches are warm (nothing is dropped); the machine may be shared, so the load average at the
# start is printed. Environment: STRATA (binary), STRATA_BENCH_XFS, STRATA_BENCH_OCI_A,
# STRATA_BENCH_OCI_B, STRATA_BENCH_REPS (default 5), STRATA_BENCH_KEEP.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
STRATA=${STRATA:-$REPO/target/release/strata}
PEERS=${STRATA_PEERS:-/var/tmp/strata-peers}
XFS=${STRATA_BENCH_XFS:-$PEERS/xfs}
OCI_A=${STRATA_BENCH_OCI_A:-$PEERS/oci/rootfs-a}
OCI_B=${STRATA_BENCH_OCI_B:-$PEERS/oci/rootfs-b}
REPS=${STRATA_BENCH_REPS:-5}
TRIXIE=$REPO/scripts/trixie-run.sh
W=$XFS/strata-bench
S=$W/store

die() { echo "store.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (overlay mounts, the trixie chroot)"
[ -x "$STRATA" ] || die "no $STRATA: cargo build --release --bin strata"
xfs_info "$XFS" 2>/dev/null | grep -q 'reflink=1' || die "$XFS is not an XFS with reflink=1 (make peers)"
for l in "$OCI_A" "$OCI_B"; do [ -f "$l/index.json" ] || die "no OCI layout $l (make peers)"; done

ST=("$STRATA" --root "$S")
st() { "${ST[@]}" "$@"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2f", a / b }'; }
# Bytes in use on the filesystem (statvfs), after writing back what is dirty.
used() {
    local blocks free bsize
    sync -f "$XFS"
    read -r blocks free bsize < <(stat -f -c '%b %f %S' "$XFS")
    echo $(((blocks - free) * bsize))
}
phys() { st df --json | jq .physical_bytes; }
logical() { st df --json | jq .logical_bytes; }
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# timed OUT CMD...: runs CMD with stdout to OUT; sets WALL and CPU (user + sys, children included).
timed() {
    local out=$1; shift
    /usr/bin/time -f '%e %U %S' -o "$W/time.txt" "$@" >"$out"
    read -r WALL u s <"$W/time.txt"
    CPU=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
}

cleanup() {
    for m in "$S"/containers/*/merged; do umount "$m" 2>/dev/null || true; done
    [ -n "${STRATA_BENCH_KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT
cleanup
mkdir -p "$W"

echo "## Store: import, commit, export"
echo
echo "strata $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?') (release build), $(nproc) cores," \
    "load average at start $(cut -d' ' -f1-3 /proc/loadavg), XFS reflink=1 loop mount, warm page cache;" \
    "\`benches/store.sh\` on $(date -u +%Y-%m-%d)."
echo

# ---------------------------------------------------------------------------------------
# 1. Import
U0=$(used)
timed "$W/a.json" "${ST[@]}" import "oci:$OCI_A:latest" --name bench-a --json
A_WALL=$WALL A_CPU=$CPU
P1=$(phys) L1=$(logical) U1=$(used)
timed "$W/b.json" "${ST[@]}" import "oci:$OCI_B:latest" --name bench-b --json
B_WALL=$WALL B_CPU=$CPU
P2=$(phys) L2=$(logical) U2=$(used)
B_LOGICAL=$((L2 - L1)) B_PHYS=$((P2 - P1)) B_USED=$((U2 - U1))
jb() { jq -r ".$1" "$W/b.json"; }

echo "### 1. Import of the debootstrap pair (gzip OCI layouts) into a fresh store"
echo
echo "| step | wall s | CPU s | logical bytes added | physical added (\`df\`) | statvfs used added |"
echo "|---|---:|---:|---:|---:|---:|"
echo "| import a (empty store) | $A_WALL | $A_CPU | $(mib "$L1") MiB | $(mib "$P1") MiB | $(mib $((U1 - U0))) MiB |"
echo "| import b (after a) | $B_WALL | $B_CPU | $(mib "$B_LOGICAL") MiB | $(mib "$B_PHYS") MiB | $(mib "$B_USED") MiB |"
echo
echo "b: $(mib "$(jb bytes_reused)") MiB reused from a ($(mib "$(jb bytes_reflinked)") MiB of it by reflink)," \
    "$(mib "$(jb bytes_written)") MiB written, $(mib "$(jb bytes_fetched)") MiB of gzip read."
echo
echo "| space b adds on XFS | MiB | of b's logical size |"
echo "|---|---:|---:|"
echo "| strata import (physical, \`strata df\`) | $(mib "$B_PHYS") | $(ratio "$B_PHYS" "$B_LOGICAL") |"
echo "| strata import (statvfs) | $(mib "$B_USED") | $(ratio "$B_USED" "$B_LOGICAL") |"
echo "| podman 5.4 partial pull (brief §6) | 66 | $(ratio $((66 << 20)) "$B_LOGICAL") |"
echo "| casync extract with seed a (brief §6) | 98 | $(ratio $((98 << 20)) "$B_LOGICAL") |"
echo

# ---------------------------------------------------------------------------------------
# 2. Commit
: >"$W/commit10.txt"
for i in $(seq 1 "$REPS"); do
    st container create bench-b "c10-$i" >/dev/null
    M=$(st container mount "c10-$i")
    # 10 files of different sizes in different directories (the same ones every time).
    find "$M/usr/lib/python3.11" "$M/etc" "$M/usr/bin" -maxdepth 1 -type f -size +4k 2>/dev/null |
        sort | awk 'NR % 20 == 1' | head -10 >"$W/files.txt"
    [ "$(wc -l <"$W/files.txt")" = 10 ] || die "could not find 10 files to change in $M"
    while read -r f; do printf '# strata bench %s\n' "$i" >>"$f"; done <"$W/files.txt"
    sync -f "$M"
    p0=$(phys)
    timed "$W/c10.json" "${ST[@]}" commit "c10-$i" "bench-c10-$i" --json
    p1=$(phys)
    jq -r --arg wall "$WALL" --arg cpu "$CPU" --arg dp $((p1 - p0)) \
        '"\(.seconds * 1000) \($wall) \($cpu) \(.entries) \(.bytes_reflinked) \(.bytes_written) \($dp) \(.diff_method)"' \
        "$W/c10.json" >>"$W/commit10.txt"
    st container umount "c10-$i"
done
C10_MS=$(awk '{ print $1 }' "$W/commit10.txt" | median)
C10_WALL=$(awk '{ print $2 * 1000 }' "$W/commit10.txt" | median)
C10_CPU=$(awk '{ print $3 }' "$W/commit10.txt" | median)
read -r _ _ _ C10_ENTRIES C10_RL C10_WR C10_DP C10_METHOD < <(sort -g "$W/commit10.txt" | sed -n "$(((REPS + 1) / 2))p")

# 1 GiB of new files.
st container create bench-b big >/dev/null
M=$(st container mount big)
mkdir "$M/bench-big"
for i in $(seq -w 0 255); do head -c 4M /dev/urandom >"$M/bench-big/f$i"; done
sync -f "$M"
p0=$(phys) u0=$(used)
timed "$W/big.json" "${ST[@]}" commit big bench-big --json
BIG_WALL=$WALL BIG_CPU=$CPU BIG_DP=$(($(phys) - p0)) BIG_DU=$(($(used) - u0))
st container umount big

# chmod-only copy-up of the same 1 GiB.
st container create bench-big chm >/dev/null
M=$(st container mount chm)
chmod 0600 "$M"/bench-big/f*
sync -f "$M"
p0=$(phys) u0=$(used)
timed "$W/chm.json" "${ST[@]}" commit chm bench-chmod --json
CHM_WALL=$WALL CHM_CPU=$CPU CHM_DP=$(($(phys) - p0)) CHM_DU=$(($(used) - u0))
st container umount chm

jc() { jq -r ".$2" "$W/$1.json"; }
# commit_row LABEL JSON WALL CPU PHYSICAL_ADDED USED_ADDED
commit_row() {
    printf '| %s | %.0f | %.0f | %s | %s | %s MiB | %s MiB | %s MiB | %s MiB |\n' "$1" \
        "$(awk -v s="$(jc "$2" seconds)" 'BEGIN { print s * 1000 }')" "$(awk -v w="$3" 'BEGIN { print w * 1000 }')" \
        "$4" "$(jc "$2" entries)" "$(mib "$(jc "$2" bytes_reflinked)")" "$(mib "$(jc "$2" bytes_written)")" \
        "$(mib "$5")" "$(mib "$6")"
}
echo "### 2. Commit on the imported b"
echo
echo "| change | commit ms | wall ms (CLI) | CPU s | entries | reflinked | written | physical added (\`df\`) | statvfs used added |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
printf '| 10 files appended to (median of %s, %s) | %.1f | %.0f | %s | %s | %s KiB | %s KiB | %s KiB | - |\n' \
    "$REPS" "$C10_METHOD" "$C10_MS" "$C10_WALL" "$C10_CPU" "$C10_ENTRIES" "$((C10_RL >> 10))" "$((C10_WR >> 10))" "$((C10_DP >> 10))"
commit_row "1 GiB of new files (256 x 4 MiB)" big "$BIG_WALL" "$BIG_CPU" "$BIG_DP" "$BIG_DU"
commit_row "chmod of the same 1 GiB (copy-up)" chm "$CHM_WALL" "$CHM_CPU" "$CHM_DP" "$CHM_DU"
echo
echo "Each 10-file run: \`commit-ms wall-s cpu-s entries reflinked written physical-added method\`:"
echo
sed 's/^/    /' "$W/commit10.txt"
echo

# ---------------------------------------------------------------------------------------
# 3. Export
B_LAYER=$(jq -r '.layers[0]' "$W/b.json")
TAR_BYTES=$(st layers --json | jq --arg id "$B_LAYER" '.layers[] | select(.id == $id) | .tar_bytes')
[ -n "$TAR_BYTES" ] || die "no tar_bytes for layer $B_LAYER"
blob_size() { jq '.layers[0].size' "$1"; }
rate() { awk -v b="$TAR_BYTES" -v w="$1" 'BEGIN { printf "%.0f", b / 1e6 / w }'; }
rows=()
for fmt in zstd:chunked tar+zstd tar+gzip tar; do
    d=$W/exp-${fmt//[:+]/-}
    u0=$(used)
    timed "$W/exp.json" "${ST[@]}" export bench-b "oci:$d:b" --format "$fmt" --json
    du=$(($(used) - u0))
    rows+=("| strata export --format $fmt | $WALL | $CPU | $(rate "$WALL") | $(mib "$(blob_size "$W/exp.json")") | $(mib "$du") |")
    [ "$fmt" != tar ] || TAR_ROW="| b (imported: 512-byte aligned payloads) | $WALL | $CPU | $(mb "$TAR_BYTES") | $(rate "$WALL") | $(mib "$du") |"
done
# skopeo reads strata's uncompressed tar export: it only has to compress.
for fmt in zstd:chunked zstd; do
    out=sk-${fmt//:/-}
    timed "$W/sk.txt" "$TRIXIE" "$W" skopeo copy -q --dest-compress-format="$fmt" \
        oci:/data/exp-tar:b "oci:/data/$out:b"
    m=$(jq -r '.manifests[0].digest' "$W/$out/index.json" | sed 's/sha256://')
    size=$(jq '.layers[0].size' "$W/$out/blobs/sha256/$m")
    [ "$fmt" != zstd:chunked ] || jq -e '.layers[0].annotations["io.github.containers.zstd-chunked.manifest-position"]' \
        "$W/$out/blobs/sha256/$m" >/dev/null || die "skopeo did not write a zstd:chunked layer"
    rows+=("| skopeo 1.18 copy --dest-compress-format $fmt (from the tar layout) | $WALL | $CPU | $(rate "$WALL") | $(mib "$size") | - |")
done
echo "### 3. Export of b ($(mb "$TAR_BYTES") MB uncompressed tar)"
echo
echo "| exporter | wall s | CPU s | MB/s of tar | layer blob MiB | statvfs used added MiB |"
echo "|---|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
echo
# An imported layer keeps its tar's 512-byte payload offsets, so its tar export copies; a
# layer strata wrote (the 1 GiB commit) has 4 KiB-aligned payloads, and its export clones.
u0=$(used)
timed "$W/expbig.json" "${ST[@]}" export bench-big "oci:$W/exp-big:big" --format tar --json
BIGX_BYTES=$(jq '[.layers[].size] | add' "$W/expbig.json")
echo "| tar export | wall s | CPU s | tar MB | MB/s | statvfs used added MiB |"
echo "|---|---:|---:|---:|---:|---:|"
echo "$TAR_ROW"
echo "| b + the committed 1 GiB layer (4 KiB aligned) | $WALL | $CPU | $(mb "$BIGX_BYTES") | $(awk -v b="$BIGX_BYTES" -v w="$WALL" 'BEGIN { printf "%.0f", b / 1e6 / w }') | $(mib $(($(used) - u0))) |"
echo
ZC_WALL=$(printf '%s\n' "${rows[0]}" | awk -F'|' '{ print $3 }')
SK_WALL=$(printf '%s\n' "${rows[4]}" | awk -F'|' '{ print $3 }')
echo "zstd:chunked: strata is $(ratio "$SK_WALL" "$ZC_WALL")x faster than skopeo (wall)."
