//! `strata gc [--dry-run]`.

use super::Ctx;
use crate::output::{human_bytes, print_json};

pub fn run(ctx: &Ctx, dry_run: bool) -> anyhow::Result<()> {
    let store = ctx.open()?;
    let r = store.gc(dry_run)?;
    if ctx.json {
        return print_json(&r);
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    println!(
        "{verb} {} layers, {} index entries, {} staging directories; {} {} in {:.2}s",
        r.layers_removed,
        r.index_entries_removed,
        r.staging_removed,
        if dry_run { "would free" } else { "freed" },
        human_bytes(r.bytes_freed),
        r.seconds
    );
    Ok(())
}
