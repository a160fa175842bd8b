//! `strata diff`: the differ forms (`--upper/--lower`, `--mount`, `--base/--target`) and
//! the store form (`IMAGE_A IMAGE_B`).

use std::fs::File;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use serde_json::json;
use strata_differ::{Changeset, WriteOptions, diff_mount, diff_overlay, diff_trees, write_layer};
use strata_layer::TarOut;
use strata_layer::out_file::{FileTarOut, WriteTarOut};
use strata_layer::par_compress::{Codec, ParallelWriter};

use super::Ctx;
use crate::args::{DiffArgs, Format};
use crate::output::print_json;

/// Where the layer goes: a file (removed again if writing fails) or stdout.
pub struct Output {
    file: File,
    path: Option<std::path::PathBuf>,
}

impl Output {
    pub fn create(path: &Path) -> anyhow::Result<Output> {
        if path.as_os_str() == "-" {
            use std::os::fd::AsFd;
            let fd = std::io::stdout().as_fd().try_clone_to_owned().context("duplicating stdout")?;
            return Ok(Output { file: File::from(fd), path: None });
        }
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Output { file, path: Some(path.to_owned()) })
    }

    pub fn discard(&self) {
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Writes `cs` in `format` to `out`; returns the bytes written.
pub fn write_changeset(
    cs: &Changeset,
    format: Format,
    out: &Output,
) -> anyhow::Result<(strata_differ::WriteStats, u64)> {
    let file = out.file.try_clone()?;
    let opts = WriteOptions::default();
    let result = match format {
        Format::Tar => {
            let mut sink = FileTarOut::new(file)?;
            let stats = write_layer(cs, &mut sink, &opts)?;
            let n = sink.bytes_written();
            sink.into_inner()?.sync_all().ok();
            (stats, n)
        }
        Format::TarZstd => {
            let mut sink = WriteTarOut::new(ParallelWriter::new(std::io::BufWriter::new(file), Codec::Zstd(3)));
            let stats = write_layer(cs, &mut sink, &opts)?;
            let z = sink.into_inner()?;
            let n = z.bytes_out();
            z.finish()?.flush()?;
            (stats, n)
        }
        Format::TarGzip => {
            let mut sink = WriteTarOut::new(ParallelWriter::new(std::io::BufWriter::new(file), Codec::Gzip(6)));
            let stats = write_layer(cs, &mut sink, &opts)?;
            let z = sink.into_inner()?;
            let n = z.bytes_out();
            z.finish()?.flush()?;
            (stats, n)
        }
        Format::ZstdChunked => {
            let zopts = strata_zstd_chunked::WriterOptions::default();
            let mut sink = strata_zstd_chunked::ZstdChunkedWriter::new(std::io::BufWriter::new(file), zopts)?;
            let stats = write_layer(cs, &mut sink as &mut dyn TarOut, &opts)?;
            let (mut w, info) = sink.finish()?;
            w.flush()?;
            (stats, info.blob_size)
        }
    };
    Ok(result)
}

pub fn run(ctx: &Ctx, a: DiffArgs) -> anyhow::Result<()> {
    if !a.images.is_empty() {
        if a.images.len() != 2 || a.upper.is_some() || a.base.is_some() || a.mount.is_some() {
            bail!("the store form is `strata diff IMAGE_A IMAGE_B -o FILE`");
        }
        return super::merge::store_diff(ctx, &a.images[0], &a.images[1], &a.output, a.format);
    }
    let cs = if let Some(upper) = &a.upper {
        diff_overlay(upper, &a.lower, None).with_context(|| format!("diffing upperdir {}", upper.display()))?
    } else if let Some(m) = &a.mount {
        diff_mount(m).with_context(|| format!("diffing overlay mount {}", m.display()))?
    } else if let (Some(b), Some(t)) = (&a.base, &a.target) {
        diff_trees(b, t).with_context(|| format!("diffing {} against {}", t.display(), b.display()))?
    } else {
        bail!("give --upper DIR --lower DIR..., --mount MOUNTPOINT, --base DIR --target DIR, or IMAGE_A IMAGE_B");
    };
    let out = Output::create(&a.output)?;
    let (stats, bytes) = match write_changeset(&cs, a.format, &out) {
        Ok(r) => r,
        Err(e) => {
            out.discard();
            return Err(e.context(format!("writing {}", a.output.display())));
        }
    };
    let report = json!({
        "method": cs.method.as_str(),
        "fallback_reason": cs.fallback_reason,
        "entries": stats.entries,
        "whiteouts": stats.whiteouts,
        "bytes": bytes,
    });
    if ctx.json {
        return print_json(&report);
    }
    if a.output.as_os_str() != "-" {
        eprintln!(
            "{} entries ({} whiteouts), {} bytes, method {}{}",
            stats.entries,
            stats.whiteouts,
            bytes,
            cs.method.as_str(),
            cs.fallback_reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()
        );
    }
    Ok(())
}
