//! `strata fsck [--full]`: exit status 1 when the store is not consistent.

use super::Ctx;
use crate::output::print_json;

pub fn run(ctx: &Ctx, full: bool) -> anyhow::Result<()> {
    // Opened for writing so that crash recovery runs first: fsck checks the recovered store.
    let store = ctx.open()?;
    let r = store.fsck(full)?;
    if ctx.json {
        print_json(&r)?;
    } else {
        for e in &r.errors {
            println!("error: {e}");
        }
        println!(
            "{}: {} images, {} layers, {} files checked ({} hashed), {} index entries checked{} in {:.2}s",
            if r.ok { "ok" } else { "NOT OK" },
            r.images,
            r.layers,
            r.files_checked,
            r.files_hashed,
            r.index_entries_checked,
            if r.full { " (full)" } else { " (sampled)" },
            r.seconds
        );
    }
    if !r.ok {
        anyhow::bail!("fsck found {} problems", r.errors.len());
    }
    Ok(())
}
