//! `strata pull` against a real `docker-registry`, on XFS: partial pulls of zstd:chunked
//! images made by skopeo 1.18 (containers/storage chunks) and by `strata push` (FastCDC),
//! layers already present not fetched, registries that ignore ranges or corrupt a chunk,
//! and pulls racing the removal of the image that supplies the reused chunks.
//!
//! The oracle is always a full pull of the same image into a fresh store: a partial pull
//! must give identical layer directories (every attribute), and `fsck --full` must pass.

mod common;
#[path = "common/registry.rs"]
mod registry;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use common::*;
use registry::*;
use strata_testutil::{LoopMount, Registry, require_root, require_tool};

/// Who wrote the zstd:chunked blobs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Producer {
    Strata,
    Skopeo,
}

/// A registry holding images a, b, c (see `related_trees`) as zstd:chunked in repositories
/// `zc/a`, `zc/b`, `zc/c` (tag v1), pushed by `producer`.
struct Setup {
    m: LoopMount,
    reg: Registry,
}

impl Setup {
    fn new(producer: Producer) -> Setup {
        let m = LoopMount::xfs(3072);
        let reg = Registry::start();
        let t = related_trees(m.path());
        let (la, lb, lc) = related_layouts(m.path(), &t);
        match producer {
            Producer::Strata => {
                let src = m.path().join("producer");
                for (l, n) in [(&la, "a"), (&lb, "b"), (&lc, "c")] {
                    strata_json(&src, &["import", &format!("oci:{}:v1", l.display()), "--name", n]);
                    let target = format!("{}/zc/{n}:v1", reg.addr());
                    strata_json(&src, &["push", n, &target, "--format", "zstd:chunked", "--plain-http"]);
                }
            }
            Producer::Skopeo => {
                for (l, n) in [(&la, "a"), (&lb, "b"), (&lc, "c")] {
                    let name = l.file_name().unwrap().to_str().unwrap();
                    skopeo(
                        m.path(),
                        &[
                            "copy",
                            "--dest-tls-verify=false",
                            "--dest-compress-format=zstd:chunked",
                            "--format=oci",
                            &format!("oci:/data/{name}:v1"),
                            &format!("docker://{}/zc/{n}:v1", reg.addr()),
                        ],
                    );
                }
            }
        }
        Setup { m, reg }
    }

    fn target(&self, image: &str) -> String {
        format!("{}/zc/{image}:v1", self.reg.addr())
    }

    fn store(&self, name: &str) -> PathBuf {
        self.m.path().join(name)
    }

    /// A fresh store with `image` pulled in full (nothing to reuse): the oracle.
    fn full_pull(&self, image: &str) -> PathBuf {
        let root = self.store(&format!("full-{image}"));
        if !root.exists() {
            strata_json(&root, &["pull", &self.target(image), "--name", image, "--plain-http"]);
        }
        root
    }

    /// The single layer blob of `image`: (digest, size).
    fn blob(&self, image: &str) -> (String, u64) {
        let man = manifest(self.reg.addr(), &format!("zc/{image}"), "v1");
        let l = man.layers.last().unwrap();
        assert!(l.annotations.contains_key("io.github.containers.zstd-chunked.manifest-checksum"), "{l:?}");
        (l.digest.to_string(), l.size)
    }
}

fn pull_via(root: &Path, proxy: &Proxy, image: &str) -> serde_json::Value {
    strata_json(root, &["pull", &format!("{}/zc/{image}:v1", proxy.addr()), "--name", image, "--plain-http"])
}

fn partial_pull_after_a_related_image(producer: Producer) {
    let s = Setup::new(producer);
    let root = s.store("store");
    strata_json(&root, &["pull", &s.target("a"), "--name", "a", "--plain-http"]);
    let proxy = Proxy::start(s.reg.addr(), ProxyMode::Honest);
    let r = pull_via(&root, &proxy, "b");
    for key in
        ["image", "layers", "bytes_fetched", "bytes_reused", "bytes_reflinked", "bytes_written", "partial", "seconds"]
    {
        assert!(!r[key].is_null(), "pull JSON lacks {key}: {r}");
    }
    let (_, blob_size) = s.blob("b");
    let fetched = proxy.stats.blob_bytes.load(Ordering::Relaxed);
    eprintln!("{producer:?}: {fetched} of a {blob_size}-byte blob on the wire: {r}");
    assert_eq!(r["partial"], true, "{r}");
    assert!(fetched * 4 < blob_size, "{producer:?}: fetched {fetched} of a {blob_size}-byte blob: {r}");
    // The client's own count includes the manifest and config; it agrees with the wire.
    let counted = r["bytes_fetched"].as_u64().unwrap();
    assert!(counted >= fetched && counted < fetched + 16384, "{r} vs {fetched} on the wire");
    assert!(proxy.stats.ranged_requests.load(Ordering::Relaxed) >= 2, "TOC/tar-split, then chunks");
    // Most of b's bytes came from a's layer, by reflink on XFS.
    let reused = r["bytes_reused"].as_u64().unwrap();
    assert!(reused > 4 << 20, "{r}");
    assert!(r["bytes_reflinked"].as_u64().unwrap() > 3 << 20, "{r}");

    // Identical to a full pull, and the store is consistent.
    let full = s.full_pull("b");
    assert_same_image(&full, &root, "b", "b");
    assert_eq!(strata_json(&root, &["fsck", "--full"])["ok"], true);

    // c = b's layer + one more: b's layer is present and not fetched at all.
    let before = proxy.stats.blob_bytes.load(Ordering::Relaxed);
    let r = pull_via(&root, &proxy, "c");
    assert_eq!(r["layers_present"], 1, "{r}");
    let fetched_c = proxy.stats.blob_bytes.load(Ordering::Relaxed) - before;
    let (_, top_size) = s.blob("c");
    assert!(fetched_c <= top_size + 4096, "fetched {fetched_c} for a top layer of {top_size}");
    assert_same_image(&s.full_pull("c"), &root, "c", "c");
    assert_eq!(strata_json(&root, &["fsck", "--full"])["ok"], true);
}

#[test]
fn partial_pull_of_skopeo_pushed_zstd_chunked() {
    if !require_peers() || !require_tool("mkfs.xfs") || !require_tool("docker-registry") {
        return;
    }
    partial_pull_after_a_related_image(Producer::Skopeo);
}

#[test]
fn partial_pull_of_strata_pushed_zstd_chunked() {
    if !require_root() || !require_tool("mkfs.xfs") || !require_tool("docker-registry") {
        return;
    }
    partial_pull_after_a_related_image(Producer::Strata);
}

#[test]
fn pull_through_a_registry_that_ignores_ranges() {
    if !require_root() || !require_tool("mkfs.xfs") || !require_tool("docker-registry") {
        return;
    }
    let s = Setup::new(Producer::Strata);
    let root = s.store("store");
    strata_json(&root, &["pull", &s.target("a"), "--name", "a", "--plain-http"]);
    let proxy = Proxy::start(s.reg.addr(), ProxyMode::IgnoreRanges);
    let r = pull_via(&root, &proxy, "b");
    assert!(proxy.stats.whole_blob_answers.load(Ordering::Relaxed) >= 1, "the proxy answered 200");
    assert_eq!(r["partial"], true, "{r}");
    assert_same_image(&s.full_pull("b"), &root, "b", "b");
    assert_eq!(strata_json(&root, &["fsck", "--full"])["ok"], true);
}

/// zstd:chunked blobs described only by the obsolete `io.containers.zstd-chunked.*`
/// annotations (no tar-split: nothing binds their TOC to the DiffID), and zstd blobs without
/// annotations, are pulled in full, and still correctly.
#[test]
fn legacy_and_plain_zstd_layers_are_pulled_in_full() {
    if !require_root() || !require_tool("mkfs.xfs") || !require_tool("docker-registry") {
        return;
    }
    let s = Setup::new(Producer::Strata);
    let man = manifest(s.reg.addr(), "zc/b", "v1");
    let (_, blob_size) = s.blob("b");
    let relabel = |legacy: bool| {
        let mut m = man.clone();
        let a = &mut m.layers[0].annotations;
        let checksum = a.remove("io.github.containers.zstd-chunked.manifest-checksum").unwrap();
        let position = a.remove("io.github.containers.zstd-chunked.manifest-position").unwrap();
        a.clear();
        if legacy {
            a.insert("io.containers.zstd-chunked.manifest-checksum".into(), checksum);
            a.insert("io.containers.zstd-chunked.manifest-position".into(), position);
        }
        m
    };
    for (tag, legacy) in [("legacy", true), ("plain", false)] {
        assert_eq!(put_manifest(s.reg.addr(), "zc/b", tag, &relabel(legacy)), 201);
        let root = s.store(&format!("store-{tag}"));
        strata_json(&root, &["pull", &s.target("a"), "--name", "a", "--plain-http"]);
        let proxy = Proxy::start(s.reg.addr(), ProxyMode::Honest);
        let r = strata_json(&root, &["pull", &format!("{}/zc/b:{tag}", proxy.addr()), "--name", "b", "--plain-http"]);
        assert_eq!(r["partial"], false, "{tag}: {r}");
        assert_eq!(proxy.stats.ranged_requests.load(Ordering::Relaxed), 0, "{tag}: ranges were asked for");
        let wire = proxy.stats.blob_bytes.load(Ordering::Relaxed);
        assert_eq!(wire, blob_size + man.config.size, "{tag}: the layer and config blobs, once each");
        // Deduplicated on disk all the same: a's files are reused.
        assert!(r["bytes_reused"].as_u64().unwrap() > 3 << 20, "{tag}: {r}");
        assert_same_image(&s.full_pull("b"), &root, "b", "b");
        assert_eq!(strata_json(&root, &["fsck", "--full"])["ok"], true);
    }
}

/// The blob offset of the middle of a chunk of `path` in `image`'s layer.
fn chunk_offset(s: &Setup, image: &str, path: &str) -> (String, u64) {
    let man = manifest(s.reg.addr(), &format!("zc/{image}"), "v1");
    let l = &man.layers[0];
    let bytes = blob(s.reg.addr(), &format!("zc/{image}"), &l.digest.to_string());
    let plan = strata_zstd_chunked::open_layer(
        &l.annotations,
        l.size,
        &mut bytes.as_slice(),
        &strata_zstd_chunked::Limits::default(),
    )
    .unwrap();
    let e = plan.entries.iter().find(|e| e.entry.path.as_path() == Path::new(path)).unwrap();
    let c = &e.chunks[e.chunks.len() / 2];
    (l.digest.to_string(), (c.blob_range.start + c.blob_range.end) / 2)
}

#[test]
fn a_corrupted_chunk_fails_the_pull_and_changes_nothing() {
    if !require_peers() || !require_tool("mkfs.xfs") || !require_tool("docker-registry") {
        return;
    }
    for producer in [Producer::Skopeo, Producer::Strata] {
        let s = Setup::new(producer);
        let root = s.store("store");
        strata_json(&root, &["pull", &s.target("a"), "--name", "a", "--plain-http"]);
        // usr/bin/python is only in b: its chunks must be fetched.
        let (digest, offset) = chunk_offset(&s, "b", "usr/bin/python");
        let before = store_state(&root);
        let proxy = Proxy::start(s.reg.addr(), ProxyMode::Corrupt { digest, offset });
        let err = strata_fails(&root, &["pull", &format!("{}/zc/b:v1", proxy.addr()), "--name", "b", "--plain-http"]);
        eprintln!("{producer:?}: {err}");
        assert!(proxy.stats.corrupted.load(Ordering::Relaxed) >= 1, "{producer:?}: the proxy corrupted nothing");
        assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
        assert!(err.contains("usr/bin/python") && err.contains("chunk"), "{producer:?}: {err}");
        assert_eq!(store_state(&root), before, "{producer:?}: a failed pull changed the store");
        let staging: Vec<_> = std::fs::read_dir(root.join("staging")).unwrap().collect();
        assert!(staging.is_empty(), "staging left behind: {staging:?}");
        assert_eq!(strata_json(&root, &["fsck", "--full"])["ok"], true);
        // The store is fine: the same pull from the honest registry works.
        strata_json(&root, &["pull", &s.target("b"), "--name", "b", "--plain-http"]);
        assert_same_image(&s.full_pull("b"), &root, "b", "b");
    }
}

/// A pull of b racing `rmi a`, where a's layer supplies most of b's chunks. The store lock
/// serializes them (rmi waits for the pull, or the pull for rmi; with `--no-wait` rmi may
/// fail instead): whichever runs first, the pulled layer must be exactly a full pull's,
/// `fsck --full` clean, and a present exactly when its removal did not happen.
#[test]
fn pull_racing_rmi_of_the_chunk_source() {
    if !require_root() || !require_tool("mkfs.xfs") || !require_tool("docker-registry") {
        return;
    }
    let rounds: usize = std::env::var("STRATA_RACE_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let s = Setup::new(Producer::Strata);
    let full = s.full_pull("b");
    let root = s.store("store");
    let (mut pull_first, mut rmi_first, mut rmi_refused) = (0, 0, 0);
    for round in 0..rounds {
        strata_json(&root, &["pull", &s.target("a"), "--name", "a", "--plain-http"]);
        let no_wait = round % 4 == 3;
        // Vary who starts first and by how much.
        let delay = std::time::Duration::from_millis((round as u64 * 7) % 40);
        let rmi_leads = round % 2 == 0;
        let spawn_rmi = || {
            let mut c = std::process::Command::new(strata_bin());
            c.arg("--root").arg(&root);
            if no_wait {
                c.arg("--no-wait");
            }
            c.args(["rmi", "a"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
            c.spawn().unwrap()
        };
        let spawn_pull = || {
            std::process::Command::new(strata_bin())
                .arg("--root")
                .arg(&root)
                .args(["pull", &s.target("b"), "--name", "b", "--plain-http", "--json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (rmi, pull) = if rmi_leads {
            let r = spawn_rmi();
            std::thread::sleep(delay / 4);
            (r, spawn_pull())
        } else {
            let p = spawn_pull();
            std::thread::sleep(delay);
            (spawn_rmi(), p)
        };
        let (rmi, pull) = (rmi.wait_with_output().unwrap(), pull.wait_with_output().unwrap());
        assert!(pull.status.success(), "round {round}: pull failed: {}", String::from_utf8_lossy(&pull.stderr));
        let r: serde_json::Value = serde_json::from_slice(&pull.stdout).unwrap();
        let removed = if rmi.status.success() {
            true
        } else {
            let err = String::from_utf8_lossy(&rmi.stderr);
            assert!(no_wait && err.contains("locked"), "round {round}: rmi failed: {err}");
            rmi_refused += 1;
            false
        };
        if r["bytes_reused"].as_u64().unwrap() > 0 {
            pull_first += 1;
        } else {
            rmi_first += 1;
            assert!(removed, "round {round}: nothing reused although a stayed: {r}");
        }
        let names: Vec<String> = strata_json(&root, &["images"])["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(names.contains(&"a".to_owned()), !removed, "round {round}: {names:?}");
        assert_same_image(&full, &root, "b", "b");
        let fsck = strata_json(&root, &["fsck", "--full"]);
        assert_eq!(fsck["ok"], true, "round {round}: {fsck}");
        ok(&root, &["rmi", "b"]);
        if !removed {
            ok(&root, &["rmi", "a"]);
        }
    }
    eprintln!("{rounds} rounds: pull first {pull_first}, rmi first {rmi_first}, rmi refused (--no-wait) {rmi_refused}");
    if rounds >= 20 {
        assert!(pull_first > 0 && rmi_first > 0, "both orders must have happened: {pull_first} / {rmi_first}");
    }
}
