#!/usr/bin/env bash
# fuzz-smoke.sh: the CI smoke run of every fuzz target in fuzz/.
#
# Builds all targets with cargo-fuzz on the *stable* toolchain (RUSTC_BOOTSTRAP=1 unlocks
# the sanitizer flags; no nightly needed), generates the seed corpora (the `seeds` binary;
# seeds are never committed), then runs each target for FUZZ_SECONDS (default 20) on a
# scratch copy of its seeds. Exits non-zero if any target crashes, hangs (FUZZ_TIMEOUT
# seconds per input, default 10) or runs out of memory; the reproducing inputs are left in
# fuzz/artifacts/<target>/ (`<target-binary> fuzz/artifacts/<target>/crash-...` replays one).
#
# Environment: FUZZ_SECONDS, FUZZ_TIMEOUT, FUZZ_TARGETS (space-separated subset),
# FUZZ_TOOLCHAIN (default stable), CARGO_TARGET_DIR (default fuzz/target),
# FUZZ_WORK (scratch corpus directory; default a temporary one, removed at the end).
set -euo pipefail

cd "$(dirname "$0")/../fuzz"
SECONDS_EACH=${FUZZ_SECONDS:-20}
TIMEOUT=${FUZZ_TIMEOUT:-10}
TOOLCHAIN=${FUZZ_TOOLCHAIN:-stable}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
export RUSTC_BOOTSTRAP=1
TRIPLE=$(rustc +"$TOOLCHAIN" -vV | sed -n 's/^host: //p')
BIN=$CARGO_TARGET_DIR/$TRIPLE/release

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz" >&2
    cargo +"$TOOLCHAIN" install cargo-fuzz --locked
fi

start=$(date +%s)
echo "fuzz-smoke: building the fuzz targets ($(cargo +"$TOOLCHAIN" --version))" >&2
cargo +"$TOOLCHAIN" fuzz build
built=$(date +%s)

targets=${FUZZ_TARGETS:-$(cargo +"$TOOLCHAIN" fuzz list | grep -vx seeds)}
work=${FUZZ_WORK:-}
if [ -z "$work" ]; then
    work=$(mktemp -d "${TMPDIR:-/tmp}/strata-fuzz-smoke.XXXXXX")
    trap 'rm -rf "$work"' EXIT
fi
"$BIN/seeds" "$work/corpus"

failed=()
for t in $targets; do
    # Inputs bigger than the default 4 KiB matter for these (whole blobs, whole tars).
    case $t in
        zchunked_reader) max_len=300000 ;;
        zchunked_writer | layer_tar | layer_apply | tarsplit_records) max_len=65536 ;;
        *) max_len=8192 ;;
    esac
    mkdir -p "$work/corpus/$t" "artifacts/$t"
    echo "fuzz-smoke: $t for ${SECONDS_EACH}s" >&2
    if "$BIN/$t" "$work/corpus/$t" -max_total_time="$SECONDS_EACH" -timeout="$TIMEOUT" -max_len="$max_len" \
        -rss_limit_mb=2048 -artifact_prefix="artifacts/$t/" -print_final_stats=1 \
        >"$work/$t.log" 2>&1; then
        grep -E '^stat::number_of_executed_units' "$work/$t.log" | sed "s/^/fuzz-smoke: $t /" >&2 || true
    else
        echo "fuzz-smoke: $t FAILED; the end of its log:" >&2
        tail -n 40 "$work/$t.log" >&2
        failed+=("$t")
    fi
done

end=$(date +%s)
echo "fuzz-smoke: build $((built - start))s, runs $((end - built))s" >&2
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz-smoke: crashes in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz-smoke: all targets ran without a crash" >&2
