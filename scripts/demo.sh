#!/usr/bin/env bash
# The store's story end to end, on embedded defaults (see README.md, "make demo"):
#   1. generate two related images as OCI layouts (trees copied from this machine's /usr,
#      layers written by `strata diff`), no network needed;
#   2. import both into a fresh store; the second reuses what the first has;
#   3. run a container on the second, change it, commit;
#   4. export the result as zstd:chunked;
#   5. print what deduplication saved (`strata df`) and whether reflinks were available.
# The store lives in a local directory: demo/ in the repository. As root with mkfs.xfs
# available, demo/ gets a loop-mounted XFS (reflinks) unless STRATA_DEMO_PLAIN=1;
# `make demo-clean` unmounts and removes it.
set -euo pipefail
STRATA=$(realpath "${1:-target/debug/strata}")
DEMO=${STRATA_DEMO_DIR:-$PWD/demo}
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
json() { jq -r "$1"; }

mkdir -p "$DEMO"
if [ "$(id -u)" = 0 ] && command -v mkfs.xfs >/dev/null && [ "${STRATA_DEMO_PLAIN:-0}" != 1 ]; then
  if ! mountpoint -q "$DEMO/fs"; then
    mkdir -p "$DEMO/fs"
    truncate -s 4G "$DEMO/xfs.img"
    mkfs.xfs -q -f -m reflink=1 "$DEMO/xfs.img"
    mount -o loop "$DEMO/xfs.img" "$DEMO/fs"
  fi
  W=$DEMO/fs
  echo "store on a loop-mounted XFS with reflinks: $W"
else
  W=$DEMO/plain
  mkdir -p "$W"
  echo "store in a plain directory: $W"
fi
ROOT=$W/store
S() { "$STRATA" --root "$ROOT" "$@"; }
# A fresh store and fresh images every run.
if [ -d "$ROOT/containers" ]; then for c in "$ROOT"/containers/*/merged; do umount "$c" 2>/dev/null || true; done; fi
rm -rf "$ROOT" "$W/images" "$W/trees" "$W/export"
mkdir -p "$W/images" "$W/trees"

say "1. Two related images, generated from this machine's /usr"
T=$W/trees
mkdir -p "$T/empty" "$T/a/usr" "$T/b"
# a: a base system: programs and shared libraries (capped so the demo stays quick).
( cd / && find usr/bin -maxdepth 1 \( -type f -o -type l \) -size -4M > "$W/bin.txt"
  find usr/lib/x86_64-linux-gnu -maxdepth 1 -name '*.so*' \( -type f -o -type l \) -size -8M > "$W/lib.txt"
  { head -n 500 "$W/bin.txt"; head -n 400 "$W/lib.txt"; } | cpio -pdm --quiet "$T/a" )
mkdir -p "$T/a/etc" && cp -a /etc/os-release /etc/passwd /etc/group "$T/a/etc/" 2>/dev/null || true
# b: a plus a "language runtime" (perl's or python's library tree) and an updated config.
cp -a "$T/a/." "$T/b/"
for d in /usr/share/perl /usr/lib/python3 /usr/share/perl5 /usr/lib/x86_64-linux-gnu/perl-base; do
  [ -d "$d" ] && mkdir -p "$T/b$(dirname "$d")" && cp -a "$d" "$T/b$(dirname "$d")/"
done
echo "runtime=1" >> "$T/b/etc/os-release"
"$STRATA" diff --base "$T/empty" --target "$T/a" -o "$W/images/a.tar" --json | json '"layer a: \(.entries) entries, \(.bytes/1048576|floor) MiB (written by strata diff, \(.method))"'
"$STRATA" diff --base "$T/empty" --target "$T/b" -o "$W/images/b.tar" --json | json '"layer b: \(.entries) entries, \(.bytes/1048576|floor) MiB"'
python3 "$(dirname "$0")/make-layout.py" "$W/images/a" v1 "$W/images/a.tar"
python3 "$(dirname "$0")/make-layout.py" "$W/images/b" v1 "$W/images/b.tar"
rm -f "$W/images/a.tar" "$W/images/b.tar"

say "2. Import both into a fresh store"
S import "oci:$W/images/a:v1" --name demo/a --json | tee "$W/import-a.json" | json '"demo/a: read \(.bytes_fetched/1048576|floor) MiB, wrote \(.bytes_written/1048576|floor) MiB in \(.seconds*10|floor/10)s"'
S import "oci:$W/images/b:v1" --name demo/b --json | tee "$W/import-b.json" | json '"demo/b: read \(.bytes_fetched/1048576|floor) MiB; reused \(.bytes_reused/1048576|floor) MiB from demo/a (\(.bytes_reflinked/1048576|floor) MiB by reflink), wrote \(.bytes_written/1048576|floor) MiB in \(.seconds*10|floor/10)s"'

say "3. A container on demo/b: change it, commit"
S container create demo/b work >/dev/null
M=$(S container mount work)
echo "merged view: $M"
echo "feature=on" > "$M/etc/app.conf"
BIG=$(cd "$M" && find usr/lib/x86_64-linux-gnu -type f -size +1M > "$W/big.txt"; head -n 1 "$W/big.txt")
cp "$M/$BIG" "$W/append.tmp" && cat "$W/append.tmp" >> "$M/$BIG" && rm "$W/append.tmp"   # a modified library: its first chunks are unchanged
chmod 700 "$M/usr/bin/"* 2>/dev/null || true   # metadata only
rm -rf "$M/usr/share" 2>/dev/null || true       # a deleted tree
S commit work demo/b2 --json | tee "$W/commit.json" | json '"committed \(.entries) entries (\(.diff_method)) in \(.seconds*1000|floor) ms: reused \(.bytes_reused/1024|floor) KiB (\(.bytes_reflinked/1024|floor) KiB reflinked), wrote \(.bytes_written/1024|floor) KiB"'
S container rm work

say "4. Export demo/b2 as zstd:chunked"
S export demo/b2 "oci:$W/export:b2" --format zstd:chunked --json | json '(.layers[] | "  \(.digest[0:19])  \(.size/1048576*10|floor/10) MiB  \(.media_type)"), "in \(.seconds*10|floor/10)s"'

say "5. What deduplication saved"
S df
S df --json > "$W/df.json"
python3 - "$W" <<'PY'
import json, sys
w = sys.argv[1]
df = json.load(open(f"{w}/df.json")); b = json.load(open(f"{w}/import-b.json"))
saved = df["logical_bytes"] - df["physical_bytes"]
print(f"\nlogical {df['logical_bytes']>>20} MiB in {df['layers']} layers, physical {df['physical_bytes']>>20} MiB: "
      f"{saved>>20} MiB ({100*saved/max(df['logical_bytes'],1):.0f}%) saved by sharing blocks")
if b["bytes_reflinked"] > 0:
    print("reflinks: AVAILABLE on this filesystem (layers share blocks)")
else:
    print("reflinks: NOT available on this filesystem (ext4/tmpfs): reused data was copied; "
          "run as root with mkfs.xfs installed (or on XFS/btrfs) to see blocks shared")
PY
S fsck | tail -1
echo
echo "store: $ROOT   (strata --root $ROOT images | layers | df)"
