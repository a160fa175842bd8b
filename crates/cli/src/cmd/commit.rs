//! `strata commit CONTAINER NAME`.

use super::{Ctx, name};
use crate::output::{human_bytes, print_json};

pub fn run(ctx: &Ctx, container: &str, image: &str) -> anyhow::Result<()> {
    let (container, image) = (name(container)?, name(image)?);
    let store = ctx.open()?;
    let r = store.commit(&container, &image)?;
    if ctx.json {
        return print_json(&r);
    }
    println!(
        "committed {} as {} (layer {}, {} entries, {}): reused {} ({} reflinked), wrote {} in {:.3}s",
        container,
        r.image,
        &r.layer.0.to_hex()[..16],
        r.entries,
        r.diff_method,
        human_bytes(r.bytes_reused),
        human_bytes(r.bytes_reflinked),
        human_bytes(r.bytes_written),
        r.seconds
    );
    Ok(())
}
