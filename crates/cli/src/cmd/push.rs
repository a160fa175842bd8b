//! `strata push IMAGE REF [--format F] [--plain-http] [--authfile FILE]`.

use std::path::PathBuf;

use strata_store::push::{LayerOutcome, PushOptions};

use super::export::layer_format;
use super::{Ctx, name};
use crate::args::Format;
use crate::output::{Bar, human_bytes, print_json};

pub fn run(
    ctx: &Ctx,
    image: &str,
    reference: &str,
    format: Format,
    plain_http: bool,
    authfile: Option<PathBuf>,
) -> anyhow::Result<()> {
    let image = name(image)?;
    let store = ctx.open()?;
    let bar = Bar::new(ctx.json);
    let opts = PushOptions { format: layer_format(format), plain_http, auth_file: authfile, ..PushOptions::default() };
    let r = store.push(&image, reference, &opts, &bar)?;
    if ctx.json {
        return print_json(&r);
    }
    let count = |o: LayerOutcome| r.layers.iter().filter(|l| l.outcome == o).count();
    println!(
        "pushed {} to {}: {} layers ({} uploaded, {} mounted, {} already there), sent {} in {:.2}s",
        r.image,
        r.reference,
        r.layers.len(),
        count(LayerOutcome::Uploaded),
        count(LayerOutcome::Mounted),
        count(LayerOutcome::Exists) + count(LayerOutcome::Present),
        human_bytes(r.bytes_uploaded),
        r.seconds
    );
    Ok(())
}
