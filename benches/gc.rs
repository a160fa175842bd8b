//! gc and fsck on a store with 100 layers and 1M indexed chunks (issue 7's benchmark).
//!
//! 100 small images are imported for real; then 1M chunk locations are added to the index,
//! spread over those layers: 64-byte ranges of each layer's 1 MiB data file under their
//! real BLAKE3 digests, so that fsck's content checks pass (a million real 64 KiB chunks
//! would be ~64 GB of data; what gc and fsck pay per chunk is the index scan and one small
//! read, which this measures). Half the
//! images are dropped from the records, so gc removes 50 layers and about half the entries.
//! Peak memory is each `strata` process's own max RSS (`/usr/bin/time`).
//!
//!     cargo bench --bench gc            (root; STRATA_BENCH_DIR to choose the filesystem)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use strata_index::{Index, Key, LayerNum, Loc, OpenMode};
use strata_types::{Blake3Digest, ImageName};

fn strata() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let p = dir.join("strata");
    assert!(p.exists(), "build the binary first: cargo build --release --bin strata ({})", p.display());
    p
}

/// Runs strata, returning (seconds, its peak RSS in MiB, stdout). The peak is the process's
/// own, from `/usr/bin/time` (getrusage of all children would report the largest so far).
fn timed(root: &Path, args: &[&str]) -> (f64, f64, String) {
    let rss_file = root.parent().unwrap().join("rss.txt");
    let t = Instant::now();
    let child = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(&rss_file)
        .arg(strata())
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(child.status.success(), "{args:?}: {}", String::from_utf8_lossy(&child.stderr));
    let kib: f64 = std::fs::read_to_string(&rss_file).unwrap().trim().parse().unwrap();
    (secs, kib / 1024.0, String::from_utf8_lossy(&child.stdout).into_owned())
}

fn main() {
    let base = std::env::var_os("STRATA_BENCH_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/tmp"));
    let dir = tempfile::Builder::new().prefix("strata-gc-bench-").tempdir_in(&base).unwrap();
    let root = dir.path().join("store");
    let n_layers = 100u64;
    let n_chunks: u64 = std::env::var("STRATA_BENCH_CHUNKS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    eprintln!("importing {n_layers} images...");
    for i in 0..n_layers {
        let t = dir.path().join(format!("t{i}"));
        std::fs::create_dir_all(&t).unwrap();
        // One 1 MiB file per layer: the synthetic chunks point into it.
        let mut data = vec![0u8; 1 << 20];
        blake3::Hasher::new().update(&i.to_le_bytes()).finalize_xof().fill(&mut data);
        std::fs::write(t.join("data"), &data).unwrap();
        let layout = dir.path().join(format!("l{i}"));
        let tar = {
            let empty = dir.path().join("empty");
            std::fs::create_dir_all(&empty).unwrap();
            let cs = strata_differ::diff_trees(&empty, &t).unwrap();
            let mut out = strata_layer::out_file::WriteTarOut::new(Vec::new());
            strata_differ::write_layer(&cs, &mut out, &Default::default()).unwrap();
            out.into_inner().unwrap()
        };
        write_layout(&layout, &tar);
        let st = Command::new(strata())
            .arg("--root")
            .arg(&root)
            .args(["import", &format!("oci:{}:v1", layout.display()), "--name", &format!("img{i}")])
            .output()
            .unwrap();
        assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    }
    // Layer numbers, the data file's number in each layer and its content.
    let layers: Vec<(u32, u32, Vec<u8>)> = {
        let store = strata_store::Store::open(&root, Default::default()).unwrap();
        store
            .layers()
            .unwrap()
            .iter()
            .map(|l| {
                let files = store.layer_files(l).unwrap();
                let n = files.iter().position(|f| f.entry.path.as_bytes() == b"data").unwrap() as u32;
                (l.num, n, std::fs::read(store.paths().layer_diff(&l.id).join("data")).unwrap())
            })
            .collect()
    };
    eprintln!("adding {n_chunks} index entries...");
    {
        let idx = Index::open(&root.join("index"), OpenMode::ReadWrite).unwrap();
        let mut b = idx.batch();
        for c in 0..n_chunks {
            let (layer, file, data) = &layers[(c % layers.len() as u64) as usize];
            let off = ((c / layers.len() as u64) * 64) % (1 << 20);
            let range = &data[off as usize..off as usize + 64];
            b.add_loc(
                Key::Chunk(Blake3Digest::of(range)),
                Loc { layer: LayerNum(*layer), file: *file, offset: off, len: 64 },
            );
            if b.loc_ops() >= 100_000 {
                idx.commit(std::mem::replace(&mut b, idx.batch())).unwrap();
            }
        }
        idx.commit(b).unwrap();
        idx.flush().unwrap();
    }
    {
        let store = strata_store::Store::open(&root, Default::default()).unwrap();
        for i in (0..n_layers).step_by(2) {
            store.forget_image_record_for_tests(&ImageName::new(format!("img{i}")).unwrap()).unwrap();
        }
    }
    let (fsck_s, fsck_rss, _) = timed(&root, &["fsck", "--json"]);
    let (dry_s, dry_rss, dry) = timed(&root, &["gc", "--dry-run", "--json"]);
    let (gc_s, gc_rss, gc) = timed(&root, &["gc", "--json"]);
    let (full_s, full_rss, _) = timed(&root, &["fsck", "--full", "--json"]);
    let gc: serde_json::Value = serde_json::from_str(&gc).unwrap();
    let dry: serde_json::Value = serde_json::from_str(&dry).unwrap();
    println!("| operation ({n_layers} layers, {n_chunks} index entries) | seconds | peak RSS (MiB) | result |");
    println!("|---|---:|---:|---|");
    println!("| fsck (sampled) | {fsck_s:.2} | {fsck_rss:.0} | |");
    println!(
        "| gc --dry-run | {dry_s:.2} | {dry_rss:.0} | {} layers, {} entries would go |",
        dry["layers_removed"], dry["index_entries_removed"]
    );
    println!(
        "| gc | {gc_s:.2} | {gc_rss:.0} | {} layers, {} entries removed, {} bytes freed |",
        gc["layers_removed"], gc["index_entries_removed"], gc["bytes_freed"]
    );
    println!("| fsck --full (after gc) | {full_s:.2} | {full_rss:.0} | |");
    println!("\npeak RSS: each strata process's own maximum resident set (/usr/bin/time %M)");
}

fn write_layout(layout: &Path, tar: &[u8]) {
    use std::io::Write;
    use strata_oci::{Descriptor, ImageConfig, ImageManifest, layout::OciDir, media};
    let dir = OciDir::create(layout).unwrap();
    let mut w = dir.blob_writer().unwrap();
    w.write_all(tar).unwrap();
    let (d, size) = w.finish(None).unwrap();
    let config = dir.write_json_blob(media::IMAGE_CONFIG, &ImageConfig::new(vec![d])).unwrap();
    let m = ImageManifest {
        schema_version: 2,
        media_type: Some(media::IMAGE_MANIFEST.into()),
        config,
        layers: vec![Descriptor::new(media::LAYER_TAR, d, size)],
        annotations: Default::default(),
        extra: Default::default(),
    };
    let desc = dir.write_json_blob(media::IMAGE_MANIFEST, &m).unwrap();
    dir.set_tag("v1", &desc).unwrap();
}
