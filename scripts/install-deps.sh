#!/usr/bin/env bash
# Installs the system packages strata's build, tests and demo need, if any is missing.
#   libclang-dev, clang   rocksdb's bindgen
#   xfsprogs, btrfs-progs  reflink tests on loop-mounted XFS / btrfs
#   attr                   getfattr/setfattr in tests
#   docker-registry        a real OCI registry on 127.0.0.1 for pull/push tests
#   skopeo, debootstrap    interoperability tests (skopeo 1.18 comes from a trixie chroot, see setup-peers.sh)
#   zstd, tar, curl, jq    format checks in tests and the demo
#   b3sum, hyperfine, time benchmarks
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have clang || need+=(clang)
[ -e /usr/lib/llvm-14/lib/libclang.so ] || ls /usr/lib/llvm-*/lib/libclang*.so >/dev/null 2>&1 || need+=(libclang-dev)
have mkfs.xfs || need+=(xfsprogs)
have mkfs.btrfs || need+=(btrfs-progs)
have setfattr || need+=(attr)
have docker-registry || need+=(docker-registry)
have skopeo || need+=(skopeo)
have debootstrap || need+=(debootstrap)
have zstd || need+=(zstd)
have curl || need+=(curl)
have jq || need+=(jq)
have python3 || need+=(python3)
have cpio || need+=(cpio)
have filefrag || need+=(e2fsprogs)
have mkfs.ext4 || need+=(e2fsprogs)
have b3sum || need+=(b3sum)
have hyperfine || need+=(hyperfine)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing packages: ${need[*]} (run as root, or install them: apt-get install ${need[*]})" >&2
    exit 1
  fi
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "cargo is not installed (https://rustup.rs)" >&2; exit 1; }
