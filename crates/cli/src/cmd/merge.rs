//! `strata merge`, `strata squash` and the store form of `strata diff`.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::json;

use super::diff::{Output, write_changeset};
use super::{Ctx, name};
use crate::args::Format;
use crate::output::{human_bytes, print_json};

/// `strata diff IMAGE_A IMAGE_B -o FILE`: the layer that turns A's root filesystem into B's,
/// computed from the store's records; only the files that go into it are read.
pub fn store_diff(ctx: &Ctx, a: &str, b: &str, out_path: &Path, format: Format) -> anyhow::Result<()> {
    let start = Instant::now();
    let (a, b) = (name(a)?, name(b)?);
    // The layers stay pinned until the layer is written: its files come from them.
    let store = ctx.open()?;
    let _pinned = store.pin_images(&[&a, &b])?;
    let cs = store.diff_images(&a, &b).with_context(|| format!("diffing image {a} against {b}"))?;
    let out = Output::create(out_path)?;
    let (stats, bytes) = match write_changeset(&cs, format, &out) {
        Ok(r) => r,
        Err(e) => {
            out.discard();
            return Err(e.context(format!("writing {}", out_path.display())));
        }
    };
    drop(_pinned);
    drop(store);
    if ctx.json {
        return print_json(&json!({
            "method": cs.method.as_str(),
            "fallback_reason": cs.fallback_reason,
            "entries": stats.entries,
            "whiteouts": stats.whiteouts,
            "bytes": bytes,
            "seconds": start.elapsed().as_secs_f64(),
        }));
    }
    if out_path.as_os_str() != "-" {
        eprintln!("{} entries ({} whiteouts), {} bytes, method {}", stats.entries, stats.whiteouts, bytes, cs.method);
    }
    Ok(())
}

pub fn merge(ctx: &Ctx, target: &str, images: &[String], fail_on_conflict: bool) -> anyhow::Result<()> {
    let target = name(target)?;
    let inputs = images.iter().map(|s| name(s)).collect::<anyhow::Result<Vec<_>>>()?;
    let store = ctx.open()?;
    let r = store.merge(&target, &inputs, fail_on_conflict)?;
    if ctx.json {
        print_json(&r)?;
    } else {
        for c in &r.conflicts {
            let who: Vec<&str> = c.inputs.iter().map(|i| i.as_str()).collect();
            println!(
                "conflict: {} ({}) between {}",
                c.path,
                serde_json::to_value(c.kind)?.as_str().unwrap_or("?"),
                who.join(", ")
            );
        }
        if r.created {
            println!(
                "merged {} images into {}: {} layers, {} conflicts, in {:.3}s",
                inputs.len(),
                r.image,
                r.layers.len(),
                r.conflicts.len(),
                r.seconds
            );
        }
    }
    if !r.created {
        let first = &r.conflicts[0];
        bail!(
            "{} conflicts between the inputs (first: {}, {:?}): image {target} not created",
            r.conflicts.len(),
            first.path,
            first.kind
        );
    }
    Ok(())
}

pub fn squash(ctx: &Ctx, image: &str, target: &str) -> anyhow::Result<()> {
    let (image, target) = (name(image)?, name(target)?);
    let store = ctx.open()?;
    let r = store.squash(&image, &target)?;
    if ctx.json {
        return print_json(&r);
    }
    println!(
        "squashed {} layers of {} into {} (layer {}, {} entries): reused {} ({} reflinked), wrote {} in {:.3}s",
        r.squashed_layers,
        image,
        r.image,
        &r.layer.0.to_hex()[..16],
        r.entries,
        human_bytes(r.bytes_reused),
        human_bytes(r.bytes_reflinked),
        human_bytes(r.bytes_written),
        r.seconds
    );
    Ok(())
}
