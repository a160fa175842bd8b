# strata: `make demo` runs the store end to end; `make test` runs every test.
# Both install missing system packages first (scripts/install-deps.sh, needs root).

CARGO ?= cargo
export STRATA_TEST_TMP ?= /var/tmp

.PHONY: deps peers build release test demo demo-clean bench fmt clippy fuzz-build fuzz-smoke clean

deps:
	@scripts/install-deps.sh

# skopeo 1.18 / podman 5.4 in a Debian trixie chroot, for the interoperability tests.
peers: deps
	@scripts/setup-peers.sh

build: deps
	$(CARGO) build --workspace --all-targets

release: deps
	$(CARGO) build --release --bin strata

test: deps peers
	$(CARGO) test --workspace --no-fail-fast

demo: deps
	$(CARGO) build --bin strata
	@scripts/demo.sh target/debug/strata

demo-clean:
	-umount demo/fs/store/containers/*/merged 2>/dev/null
	-umount demo/fs 2>/dev/null
	rm -rf demo

# Every benchmark, one after the other (they share 2 cores: never run them alongside other
# work). The debootstrap data and the XFS come from `make peers`; results are printed as
# markdown.
bench: deps peers
	@scripts/setup-peers.sh --xfs
	$(CARGO) build --release --bin strata
	$(CARGO) bench --bench differ --bench chunker --bench index --bench gc --bench merge
	benches/store.sh
	benches/pull.sh
	benches/push.sh
	benches/pull-memory.sh

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Every fuzz target for FUZZ_SECONDS (default 20) each, stable toolchain; fails on a crash.
fuzz-smoke:
	@scripts/fuzz-smoke.sh

clean:
	$(CARGO) clean
