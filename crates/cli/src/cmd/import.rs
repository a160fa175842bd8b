//! `strata import oci:PATH[:TAG]`.

use super::{Ctx, name};
use crate::output::{Bar, human_bytes, print_json};

pub fn run(ctx: &Ctx, source: &str, image: Option<String>) -> anyhow::Result<()> {
    let image = image.map(|n| name(&n)).transpose()?;
    let store = ctx.open()?;
    let bar = Bar::new(ctx.json);
    let r = store.import_oci(source, image, &bar)?;
    if ctx.json {
        return print_json(&r);
    }
    println!(
        "imported {} ({} layers, {} already present): read {}, reused {} ({} reflinked), wrote {} in {:.2}s",
        r.image,
        r.layers.len(),
        r.layers_present,
        human_bytes(r.bytes_fetched),
        human_bytes(r.bytes_reused),
        human_bytes(r.bytes_reflinked),
        human_bytes(r.bytes_written),
        r.seconds
    );
    Ok(())
}
