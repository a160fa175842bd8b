//! The `strata diff` differ forms through the binary: JSON keys, formats, stdout output,
//! `--mount`, the fallback report, and errors.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;
use strata_testutil::{OverlayMount, require_root};

fn apply_tar(tar: &[u8], onto: &Path) {
    let opts = strata_layer::apply::ApplyOptions::new(strata_layer::apply::WhiteoutMode::Oci);
    strata_layer::apply::apply_simple(onto, tar, &opts).unwrap();
}

fn decompressed(path: &Path, format: &str) -> Vec<u8> {
    let raw = fs::read(path).unwrap();
    match format {
        "tar" => raw,
        "tar+gzip" => {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&raw[..]), &mut out).unwrap();
            out
        }
        _ => zstd::decode_all(&raw[..]).unwrap(), // tar+zstd and zstd:chunked (skippable frames skipped)
    }
}

#[test]
fn base_target_in_every_format_rebuilds_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let (base, target) = (dir.path().join("base"), dir.path().join("target"));
    sample_tree(&base, 1);
    strata_testutil::run(Command::new("cp").arg("-a").arg(&base).arg(&target));
    fs::write(target.join("etc/added"), "new\n").unwrap();
    fs::remove_file(target.join("etc/passwd-")).unwrap();
    fs::remove_dir_all(target.join("usr/lib/deep")).unwrap();
    let mut tool = fs::read(target.join("usr/bin/tool")).unwrap();
    tool.extend_from_slice(b"appended");
    fs::write(target.join("usr/bin/tool"), tool).unwrap();
    for format in ["tar", "tar+zstd", "tar+gzip", "zstd:chunked"] {
        let out = dir.path().join(format!("layer-{}", format.replace([':', '+'], "-")));
        let args = [
            "diff",
            "--base",
            base.to_str().unwrap(),
            "--target",
            target.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--format",
            format,
        ];
        let j = strata_json(&dir.path().join("unused-store"), &args);
        assert_eq!(j["method"], "double-walk");
        assert!(j["fallback_reason"].is_null());
        assert_eq!(j["bytes"].as_u64().unwrap(), fs::metadata(&out).unwrap().len(), "{format}: {j}");
        assert!(j["whiteouts"].as_u64().unwrap() >= 2, "{format}: {j}");
        assert!(j["entries"].as_u64().unwrap() >= j["whiteouts"].as_u64().unwrap() + 3, "{format}: {j}");
        let copy = dir.path().join(format!("copy-{}", format.replace([':', '+'], "-")));
        strata_testutil::run(Command::new("cp").arg("-a").arg(&base).arg(&copy));
        apply_tar(&decompressed(&out, format), &copy);
        assert_same_tree(&target, &copy);
    }
    // -o - writes the same bytes to stdout.
    let file = dir.path().join("layer-tar");
    let out = Command::new(strata_bin())
        .args(["diff", "--base", base.to_str().unwrap(), "--target", target.to_str().unwrap(), "-o", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, fs::read(file).unwrap());
}

#[test]
fn upper_and_mount_forms_on_a_real_overlay() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (lower, upper, work, merged) = (d.join("lower"), d.join("upper"), d.join("work"), d.join("merged"));
    sample_tree(&lower, 2);
    for p in [&upper, &work, &merged] {
        fs::create_dir_all(p).unwrap();
    }
    let m = OverlayMount::new(&[&lower], &upper, &work, &merged, "index=off,redirect_dir=off,metacopy=off");
    fs::write(merged.join("etc/hostname"), "changed\n").unwrap();
    fs::remove_file(merged.join("usr/lib/deep/er/data")).unwrap();
    fs::write(merged.join("new"), "n").unwrap();
    let store = d.join("unused-store");
    let a = strata_json(
        &store,
        &[
            "diff",
            "--upper",
            upper.to_str().unwrap(),
            "--lower",
            lower.to_str().unwrap(),
            "-o",
            d.join("a.tar").to_str().unwrap(),
        ],
    );
    let b =
        strata_json(&store, &["diff", "--mount", merged.to_str().unwrap(), "-o", d.join("b.tar").to_str().unwrap()]);
    assert_eq!(a["method"], "upperdir");
    assert_eq!(a["whiteouts"], 1);
    assert_eq!(a, b, "--mount finds the same upper and lowers");
    assert_eq!(fs::read(d.join("a.tar")).unwrap(), fs::read(d.join("b.tar")).unwrap(), "same bytes");
    let copy = d.join("copy");
    strata_testutil::run(Command::new("cp").arg("-a").arg(&lower).arg(&copy));
    apply_tar(&fs::read(d.join("a.tar")).unwrap(), &copy);
    assert_same_tree(&merged, &copy);
    drop(m);

    // With redirect_dir=on, renaming a lower directory makes a redirect: the single walk
    // cannot prove it, and the JSON says so.
    let (upper2, work2, merged2) = (d.join("upper2"), d.join("work2"), d.join("merged2"));
    for p in [&upper2, &work2, &merged2] {
        fs::create_dir_all(p).unwrap();
    }
    let m2 = OverlayMount::new(&[&lower], &upper2, &work2, &merged2, "index=off,redirect_dir=on");
    fs::rename(merged2.join("usr/lib/deep"), merged2.join("usr/lib/moved")).unwrap();
    let c =
        strata_json(&store, &["diff", "--mount", merged2.to_str().unwrap(), "-o", d.join("c.tar").to_str().unwrap()]);
    assert_eq!(c["method"], "double-walk", "{c}");
    assert!(c["fallback_reason"].as_str().unwrap().contains("redirect"), "{c}");
    let copy2 = d.join("copy2");
    strata_testutil::run(Command::new("cp").arg("-a").arg(&lower).arg(&copy2));
    apply_tar(&fs::read(d.join("c.tar")).unwrap(), &copy2);
    assert_same_tree(&merged2, &copy2);
    drop(m2);
}

#[test]
fn bad_differ_arguments_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let o = dir.path().join("o.tar");
    let o = o.to_str().unwrap();
    for (args, needle) in [
        (vec!["diff", "--base", "/nonexistent-a", "--target", "/tmp", "-o", o], "/nonexistent-a"),
        (vec!["diff", "--mount", "/tmp", "-o", o], "/tmp"),
        (vec!["diff", "-o", o], "--upper"),
    ] {
        let err = strata_fails(&store, &args);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    // A tree holding a name that is an OCI whiteout marker cannot become a layer.
    let (b, t) = (dir.path().join("b"), dir.path().join("t"));
    fs::create_dir_all(&b).unwrap();
    fs::create_dir_all(&t).unwrap();
    fs::write(t.join(".wh.sneaky"), "").unwrap();
    let err = strata_fails(&store, &["diff", "--base", b.to_str().unwrap(), "--target", t.to_str().unwrap(), "-o", o]);
    assert!(err.contains(".wh."), "{err}");
    assert!(!Path::new(o).exists(), "a failed diff leaves no output file");
}
