//! `strata export IMAGE oci:PATH[:TAG] --format F`.

use strata_store::LayerFormat;

use super::{Ctx, name};
use crate::args::Format;
use crate::output::{human_bytes, print_json};

pub fn layer_format(f: Format) -> LayerFormat {
    match f {
        Format::Tar => LayerFormat::Tar,
        Format::TarGzip => LayerFormat::TarGzip,
        Format::TarZstd => LayerFormat::TarZstd,
        Format::ZstdChunked => LayerFormat::ZstdChunked,
    }
}

pub fn run(ctx: &Ctx, image: &str, dest: &str, format: Format) -> anyhow::Result<()> {
    let image = name(image)?;
    let store = ctx.open()?;
    let r = store.export(&image, dest, layer_format(format))?;
    if ctx.json {
        return print_json(&r);
    }
    let total: u64 = r.layers.iter().map(|l| l.size).sum();
    println!("exported {} to {dest}: {} layers, {} in {:.2}s", r.image, r.layers.len(), human_bytes(total), r.seconds);
    Ok(())
}
