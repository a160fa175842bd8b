//! `strata merge`, `strata squash` and the store form of `strata diff`.

use std::path::Path;

use super::Ctx;
use crate::args::Format;

pub fn store_diff(_ctx: &Ctx, _a: &str, _b: &str, _out: &Path, _format: Format) -> anyhow::Result<()> {
    anyhow::bail!("the store form of diff is not available yet")
}
