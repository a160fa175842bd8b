#!/usr/bin/env bash
# containerd-suite.sh: runs containerd's own snapshotter conformance suite
# (snapshots/testsuite from Debian's golang-github-containerd-containerd-dev, containerd
# 1.6.20) against a snapshotter that serves containerd's Snapshots gRPC API on a unix
# socket, through containerd's own gRPC client (snapshots/proxy). The Go harness is
# tests/containerd-suite/ (see its README.md); this script installs what is missing,
# builds it offline in GOPATH mode and runs it.
#
#   scripts/containerd-suite.sh [--bin PATH] (--test-dir DIR | --xfs SIZE)
#                               [--build-dir DIR] [--build-only] [-- TEST-BINARY-ARGS...]
#
#   --bin PATH        snapshotter to start once per test case, as
#                     PATH --root <root> snapshotter --address <root>/s.sock
#                     (default $STRATA_BIN, else target/release/strata, else target/debug/strata;
#                     the argument template is $STRATA_SUITE_ARGS, see the README)
#   --test-dir DIR    where the suite's per-test directories go (the test binary's TMPDIR):
#                     a fresh subdirectory of DIR is used and removed afterwards. Use a
#                     loop-mounted XFS for the real run. Keep DIR short: socket paths
#                     <DIR>/cs.XXXXXX/snapshot-suite-<name>-NNNNNNNNNN/root/s.sock must stay
#                     under 108 bytes.
#   --xfs SIZE        instead of --test-dir: make a sparse SIZE (e.g. 4G) XFS image
#                     (mkfs.xfs -m reflink=1 -n ftype=1) in /var/tmp, loop-mount it, run there,
#                     unmount and delete it afterwards
#   --build-dir DIR   where the test binary, Go build cache, logs and output go
#                     (default target/containerd-suite)
#   --build-only      build, do not run
#   -- ARGS           passed to the test binary after -test.root -test.v -test.timeout, e.g.
#                     -- -test.run 'TestSnapshotter/strata/(Basic|Walk)$' -test.parallel 1
#
# Environment passed through to the harness: STRATA_SUITE_NAME, STRATA_SUITE_ARGS,
# STRATA_SUITE_SNAPSHOTTER, STRATA_SUITE_START_TIMEOUT, STRATA_SUITE_STOP_TIMEOUT,
# STRATA_SUITE_EXIT, STRATA_SUITE_UMASK, STRATA_SUITE_ECHO_LOG, STRATA_SNAPSHOTTER_SOCK
# (instead of --bin). STRATA_SUITE_TIMEOUT (default 30m) is the test binary's -test.timeout.
#
# Needs root (mounts; apt-get for missing packages). Exits non-zero if anything fails,
# if no test case ran, or if a test case failed. Ends with a line
# "containerd-suite: N passed, N failed, N skipped" counting the leaf test cases.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
src=$repo/tests/containerd-suite
ctrd=/usr/share/gocode/src/github.com/containerd/containerd

bin=${STRATA_BIN:-}
test_dir=
xfs_size=
build_dir=$repo/target/containerd-suite
build_only=0
while [ $# -gt 0 ]; do
  case $1 in
    --bin) bin=$2; shift 2 ;;
    --test-dir) test_dir=$2; shift 2 ;;
    --xfs) xfs_size=$2; shift 2 ;;
    --build-dir) build_dir=$2; shift 2 ;;
    --build-only) build_only=1; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "containerd-suite: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

[ "$(id -u)" = 0 ] || { echo "containerd-suite: must run as root (mounts, apt-get)" >&2; exit 1; }

# --- packages, installed only if missing ---------------------------------------------
need=()
command -v go >/dev/null 2>&1 || need+=(golang-go)
[ -f "$ctrd/snapshots/testsuite/testsuite.go" ] && [ -f "$ctrd/snapshots/proxy/proxy.go" ] \
  || need+=(golang-github-containerd-containerd-dev)
if [ -n "$xfs_size" ] && ! command -v mkfs.xfs >/dev/null 2>&1; then need+=(xfsprogs); fi
if [ ${#need[@]} -gt 0 ]; then
  echo "containerd-suite: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- build (offline, GOPATH mode, Debian-packaged sources only) ----------------------
mkdir -p "$build_dir/gopath"
build_dir=$(cd "$build_dir" && pwd)
export GO111MODULE=off GOPATH="$build_dir/gopath:/usr/share/gocode" CGO_ENABLED=0
export GOFLAGS= GOPROXY=off GOTOOLCHAIN=local GOCACHE="${GOCACHE:-$build_dir/gocache}"
echo "containerd-suite: $(go version); golang-github-containerd-containerd-dev $(dpkg-query -W -f='${Version}' golang-github-containerd-containerd-dev 2>/dev/null || echo '?')"
t0=$(date +%s)
(cd "$src" && go test -c -o "$build_dir/containerd-suite.test" .)
echo "containerd-suite: built $build_dir/containerd-suite.test in $(( $(date +%s) - t0 ))s"
[ "$build_only" = 1 ] && exit 0

# --- what to test ---------------------------------------------------------------------
if [ -z "${STRATA_SNAPSHOTTER_SOCK:-}" ]; then
  if [ -z "$bin" ]; then
    for b in "$repo/target/release/strata" "$repo/target/debug/strata"; do
      [ -x "$b" ] && { bin=$b; break; }
    done
  fi
  [ -n "$bin" ] || { echo "containerd-suite: no snapshotter: pass --bin PATH or set STRATA_BIN" >&2; exit 1; }
  bin=$(command -v "$bin" || true)
  [ -n "$bin" ] && [ -x "$bin" ] || { echo "containerd-suite: snapshotter binary not found or not executable" >&2; exit 1; }
  bin=$(realpath "$bin")
  export STRATA_BIN=$bin
  args_template=${STRATA_SUITE_ARGS:-"--root {root} snapshotter --address {sock}"}
  echo "containerd-suite: snapshotter $bin $args_template"
else
  unset STRATA_BIN
  echo "containerd-suite: shared snapshotter socket $STRATA_SNAPSHOTTER_SOCK"
fi

# --- where to test --------------------------------------------------------------------
xfs_img= xfs_mnt= run_dir=
unmount_below() { # lazily unmount everything at or below $1, deepest first
  local d=$1
  awk -v d="$d" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
}
cleanup() {
  if [ -n "$run_dir" ] && [ -d "$run_dir" ]; then
    unmount_below "$run_dir"
    rm -rf --one-file-system "$run_dir" || true
  fi
  if [ -n "$xfs_mnt" ]; then
    unmount_below "$xfs_mnt"
    rmdir "$xfs_mnt" 2>/dev/null || true
  fi
  if [ -n "$xfs_img" ]; then rm -f "$xfs_img"; fi
}
trap cleanup EXIT
if [ -n "$xfs_size" ]; then
  [ -z "$test_dir" ] || { echo "containerd-suite: give --test-dir or --xfs, not both" >&2; exit 2; }
  xfs_img=$(mktemp /var/tmp/containerd-suite-xfs.XXXXXX.img)
  truncate -s "$xfs_size" "$xfs_img"
  mkfs.xfs -q -f -m reflink=1 -n ftype=1 "$xfs_img"
  xfs_mnt=$(mktemp -d /var/tmp/cs-xfs.XXXXXX)
  mount -o loop "$xfs_img" "$xfs_mnt"
  test_dir=$xfs_mnt
fi
[ -n "$test_dir" ] || { echo "containerd-suite: name the directory to test in: --test-dir DIR (or --xfs SIZE)" >&2; exit 2; }
mkdir -p "$test_dir"
run_dir=$(mktemp -d "$(realpath "$test_dir")/cs.XXXXXX")
if [ $(( ${#run_dir} + 48 )) -ge 108 ]; then
  echo "containerd-suite: $run_dir is too long for unix socket paths below it; use a shorter --test-dir" >&2
  exit 2
fi
echo "containerd-suite: test dir $run_dir on $(stat -f -c %T "$run_dir") ($(findmnt -n -o SOURCE,FSTYPE,OPTIONS -T "$run_dir" | tr -s ' '))"

# --- run ------------------------------------------------------------------------------
stamp=$(date +%Y%m%d-%H%M%S)
export STRATA_SUITE_LOG_DIR=${STRATA_SUITE_LOG_DIR:-$build_dir/logs-$stamp}
mkdir -p "$STRATA_SUITE_LOG_DIR"
out=$build_dir/run-$stamp.txt
echo "containerd-suite: snapshotter logs in $STRATA_SUITE_LOG_DIR, test output in $out"
umask 022
set +e
(cd "$run_dir" && TMPDIR=$run_dir exec "$build_dir/containerd-suite.test" \
  -test.root -test.v -test.timeout "${STRATA_SUITE_TIMEOUT:-30m}" "$@") 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
set -e

count() { grep -Ec "^ *--- $1: TestSnapshotter/[^/ ]+/[^ ]+ " "$out" || true; }
passed=$(count PASS) failed=$(count FAIL) skipped=$(count SKIP)
grep -E "^ *--- FAIL: TestSnapshotter/[^/ ]+/" "$out" | sed 's/^ *--- /containerd-suite: /' || true
echo "containerd-suite: $passed passed, $failed failed, $skipped skipped"
if [ "$rc" -ne 0 ]; then exit "$rc"; fi
if [ $(( passed + failed )) -eq 0 ]; then echo "containerd-suite: no test case ran" >&2; exit 1; fi
if [ "$failed" -ne 0 ]; then exit 1; fi
exit 0
