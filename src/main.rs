//! The `strata` command. All logic lives in the `strata-cli` crate; this shim exists so
//! the workspace root can own the integration tests in `tests/` and benchmarks in `benches/`.

fn main() -> std::process::ExitCode {
    strata_cli::main()
}
