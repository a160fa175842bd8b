//! `strata images`, `strata layers`, `strata rmi`.

use serde_json::json;

use super::{Ctx, name};
use crate::output::{human_bytes, print_json, print_table};

pub fn images(ctx: &Ctx) -> anyhow::Result<()> {
    let store = ctx.open()?;
    let images = store.images()?;
    if ctx.json {
        let list: Vec<_> = images
            .iter()
            .map(|i| json!({"name": i.name, "layers": i.layers, "config_digest": i.config_digest, "created": i.created, "source": i.source}))
            .collect();
        return print_json(&json!({ "images": list }));
    }
    let rows: Vec<Vec<String>> = images
        .iter()
        .map(|i| {
            vec![
                i.name.to_string(),
                i.layers.len().to_string(),
                i.config_digest.to_hex()[..12].to_owned(),
                i.source.clone(),
            ]
        })
        .collect();
    print_table(&["NAME", "LAYERS", "CONFIG", "SOURCE"], &rows);
    Ok(())
}

pub fn layers(ctx: &Ctx) -> anyhow::Result<()> {
    let store = ctx.open()?;
    let layers = store.layers()?;
    if ctx.json {
        return print_json(&json!({ "layers": layers }));
    }
    let rows: Vec<Vec<String>> = layers
        .iter()
        .map(|l| {
            vec![
                l.id.0.to_hex()[..16].to_owned(),
                format!("{:?}", l.origin).to_lowercase(),
                l.entries.to_string(),
                human_bytes(l.logical_bytes),
            ]
        })
        .collect();
    print_table(&["LAYER", "ORIGIN", "ENTRIES", "SIZE"], &rows);
    Ok(())
}

pub fn rmi(ctx: &Ctx, image: &str) -> anyhow::Result<()> {
    let image = name(image)?;
    let store = ctx.open()?;
    let removed = store.rmi(&image)?;
    if ctx.json {
        return print_json(&json!({ "image": image, "layers_removed": removed }));
    }
    println!("removed {image} ({} layers no longer used)", removed.len());
    Ok(())
}
