//! `strata pull REF [--name NAME] [--plain-http] [--authfile FILE]`.

use std::path::PathBuf;

use strata_store::pull::PullOptions;

use super::{Ctx, name};
use crate::output::{Bar, human_bytes, print_json};

pub fn run(
    ctx: &Ctx,
    reference: &str,
    image: Option<String>,
    plain_http: bool,
    authfile: Option<PathBuf>,
) -> anyhow::Result<()> {
    let image = image.map(|n| name(&n)).transpose()?;
    let store = ctx.open()?;
    let bar = Bar::new(ctx.json);
    let opts = PullOptions { plain_http, auth_file: authfile, ..PullOptions::default() };
    let r = store.pull(reference, image, &opts, &bar)?;
    if ctx.json {
        return print_json(&r);
    }
    println!(
        "pulled {} ({} layers, {} already present{}): fetched {}, reused {} ({} reflinked), wrote {} in {:.2}s",
        r.image,
        r.layers.len(),
        r.layers_present,
        if r.partial { ", partial" } else { "" },
        human_bytes(r.bytes_fetched),
        human_bytes(r.bytes_reused),
        human_bytes(r.bytes_reflinked),
        human_bytes(r.bytes_written),
        r.seconds
    );
    Ok(())
}
