//! The `strata` command line (contract: `docs/cli.md`).
//!
//! One module per command under [`cmd`]; this file parses arguments, resolves the store
//! root, and turns errors into the one-line message the contract promises.

mod args;
mod cmd;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

pub use args::Args;

/// Entry point of the `strata` binary.
pub fn main() -> ExitCode {
    let args = Args::parse();
    match cmd::run(args) {
        Ok(code) => code,
        Err(e) => {
            // `{:#}` joins the context chain with ": " on one line.
            eprintln!("strata: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The store root: `--root`, else `$STRATA_ROOT`, else `/var/lib/strata` for root, else
/// `$XDG_DATA_HOME/strata` (`~/.local/share/strata`).
pub(crate) fn default_root(flag: Option<PathBuf>) -> PathBuf {
    if let Some(r) = flag {
        return r;
    }
    if let Some(r) = std::env::var_os("STRATA_ROOT").filter(|s| !s.is_empty()) {
        return PathBuf::from(r);
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/strata");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|s| !s.is_empty()) {
        return PathBuf::from(x).join("strata");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/strata")
}
