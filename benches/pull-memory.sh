#!/usr/bin/env bash
# benches/pull-memory.sh: peak memory of pulling one zstd:chunked layer with many files.
#
# Run as root from the repository after `cargo build --release --bin strata`:
#
#     benches/pull-memory.sh | tee /tmp/pull-memory.md
#
# Builds a tree of FILES small files (default 300,000, each with distinct content, in
# directories of 1,000), imports it as a one-layer image, pushes it as zstd:chunked to a
# private docker-registry on 127.0.0.1, and pulls it into a fresh store: peak RSS of the
# pull (`/usr/bin/time %M`), its wall time, and the TOC size. Then the same for the import
# of the tree's tar (the path without a TOC) for comparison.
#
# Environment: STRATA, STRATA_BENCH_FILES, STRATA_BENCH_DIR (default /var/tmp).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$REPO/benches/lib.sh"
STRATA=${STRATA:-$REPO/target/release/strata}
FILES=${STRATA_BENCH_FILES:-300000}
W=$(mktemp -d "${STRATA_BENCH_DIR:-/var/tmp}/strata-pull-memory.XXXXXX")
[ -x "$STRATA" ] || { echo "no $STRATA" >&2; exit 1; }

REG_PID=
cleanup() {
    [ -z "$REG_PID" ] || kill "$REG_PID" 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT

start_registry "$W" error

# The tree and a one-layer OCI layout of it (python: fast, and no dependency).
python3 - "$W/tree" "$W/layout" "$FILES" <<'EOF'
import hashlib, io, json, os, sys, tarfile
tree, layout, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(n):
    d = os.path.join(tree, f"d{i // 1000:04d}")
    if i % 1000 == 0:
        os.makedirs(d)
    with open(os.path.join(d, f"f{i:07d}"), "w") as f:
        f.write(f"file {i}\n" * (1 + i % 50))
os.makedirs(os.path.join(layout, "blobs", "sha256"))
def blob(data):
    h = hashlib.sha256(data).hexdigest()
    open(os.path.join(layout, "blobs", "sha256", h), "wb").write(data)
    return "sha256:" + h, len(data)
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
    t.add(tree, arcname=".")
layer, size = blob(buf.getvalue())
cfg = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer]}}
cd, cs = blob(json.dumps(cfg).encode())
man = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
       "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
       "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": size}]}
md, ms = blob(json.dumps(man).encode())
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
          "digest": md, "size": ms, "annotations": {"org.opencontainers.image.ref.name": "v1"}}]},
          open(os.path.join(layout, "index.json"), "w"))
open(os.path.join(layout, "oci-layout"), "w").write('{"imageLayoutVersion": "1.0.0"}')
EOF

timed() { /usr/bin/time -f '%e %M' -o "$W/time.txt" "$@" >/dev/null; read -r WALL KIB <"$W/time.txt"; }
timed "$STRATA" --root "$W/producer" import "oci:$W/layout:v1" --name many
IMPORT_WALL=$WALL IMPORT_KIB=$KIB
"$STRATA" --root "$W/producer" push many "$REG/many/x:v1" --format zstd:chunked --plain-http >/dev/null
TOC=$(curl -s -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REG/v2/many/x/manifests/v1" |
    jq -r '.layers[0].annotations["io.github.containers.zstd-chunked.manifest-position"]' | cut -d: -f2)
timed "$STRATA" --root "$W/puller" pull "$REG/many/x:v1" --name many --plain-http
PULL_WALL=$WALL PULL_KIB=$KIB

echo "## Pull memory: one layer of $FILES files"
echo
echo "strata $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?') (release build), $(nproc) cores;" \
    "\`benches/pull-memory.sh\` on $(date -u +%Y-%m-%d)."
echo
echo "| operation | wall s | peak RSS MiB |"
echo "|---|---:|---:|"
echo "| import of the uncompressed layout | $IMPORT_WALL | $((IMPORT_KIB / 1024)) |"
echo "| pull of the zstd:chunked push (compressed TOC $((TOC / 1024)) KiB) | $PULL_WALL | $((PULL_KIB / 1024)) |"
