//! Helpers for the registry tests (`tests/pull.rs`, `tests/push.rs`): related test images,
//! skopeo 1.18 from the trixie chroot (`scripts/setup-peers.sh`), a byte-counting and
//! misbehaving HTTP proxy in front of a real registry, and store snapshots.
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::common::*;

/// The trixie chroot with skopeo 1.18 and podman 5.4.
pub fn peers_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("STRATA_PEERS").unwrap_or_else(|| "/var/tmp/strata-peers".into())).join("trixie")
}

/// False (test skipped) when the trixie chroot is missing; a failure under
/// `STRATA_TEST_PRIVILEGED=1` (`make test` runs `scripts/setup-peers.sh` first).
pub fn require_peers() -> bool {
    if !strata_testutil::require_root() {
        return false;
    }
    if peers_dir().join("usr/bin/skopeo").is_file() {
        return true;
    }
    let strict = std::env::var("STRATA_TEST_PRIVILEGED").is_ok_and(|v| v == "1");
    assert!(!strict, "STRATA_TEST_PRIVILEGED=1 but there is no trixie chroot: run scripts/setup-peers.sh (make peers)");
    eprintln!("skipped: needs skopeo 1.18 from scripts/setup-peers.sh");
    false
}

/// Runs `skopeo ARGS...` (1.18) in the trixie chroot with `hostdir` at `/data`. Its blob
/// info cache is private to the call, so no test sees another's uploads.
pub fn skopeo(hostdir: &Path, args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/trixie-run.sh");
    let mut cmd = Command::new(script);
    cmd.arg(hostdir)
        .args([
            "sh",
            "-c",
            "mkdir -p /var/lib/containers && mount -t tmpfs tmpfs /var/lib/containers && exec skopeo \"$@\"",
            "skopeo",
        ])
        .args(args);
    strata_testutil::run(&mut cmd)
}

/// `strata --root ROOT ARGS...`, asserting success; returns stdout.
pub fn ok(root: &Path, args: &[&str]) -> String {
    let out = strata(root, args);
    assert!(out.status.success(), "strata {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Two related single-layer trees, like a base image and the same plus a package: B keeps
/// most of A's files, changes a few bytes in the middle of A's largest file, adds files,
/// deletes one. Plus C = B plus a layer, whose first layer is B's.
pub struct Trees {
    pub a: PathBuf,
    pub b: PathBuf,
    pub c: PathBuf,
}

pub fn related_trees(dir: &Path) -> Trees {
    let a = dir.join("tree-a");
    sample_tree(&a, 1);
    fs::create_dir_all(a.join("usr/share/doc")).unwrap();
    for i in 0..40 {
        let text: String = (0..(i * 97 % 3000 + 200)).map(|k| format!("line {k} of document {i}\n")).collect();
        fs::write(a.join(format!("usr/share/doc/d{i}.txt")), text).unwrap();
    }
    fs::write(a.join("usr/lib/libmid.so"), bytes(1 << 20, 5)).unwrap();
    let b = dir.join("tree-b");
    strata_testutil::run(Command::new("cp").arg("-a").arg(&a).arg(&b));
    let mut big = fs::read(b.join("usr/lib/libbig.so")).unwrap();
    let mid = big.len() / 2;
    big.splice(mid..mid + 10, bytes(1000, 42));
    fs::write(b.join("usr/lib/libbig.so"), &big).unwrap();
    fs::write(b.join("usr/bin/python"), bytes(400_000, 77)).unwrap();
    fs::write(b.join("usr/share/doc/new.txt"), "new\n".repeat(1000)).unwrap();
    fs::remove_file(b.join("usr/share/doc/d3.txt")).unwrap();
    let c = dir.join("tree-c");
    strata_testutil::run(Command::new("cp").arg("-a").arg(&b).arg(&c));
    fs::write(c.join("etc/extra.conf"), bytes(50_000, 99)).unwrap();
    Trees { a, b, c }
}

/// OCI layouts (gzip) of the trees: `a` and `b` one layer each, `c` = b's layer + one more.
pub fn related_layouts(dir: &Path, t: &Trees) -> (PathBuf, PathBuf, PathBuf) {
    let (la, lb, lc) = (dir.join("layout-a"), dir.join("layout-b"), dir.join("layout-c"));
    image_from_trees(&la, "v1", &[&t.a], Compression::Gzip);
    image_from_trees(&lb, "v1", &[&t.b], Compression::Gzip);
    image_from_trees(&lc, "v1", &[&t.b, &t.c], Compression::Gzip);
    (la, lb, lc)
}

/// What a store holds, to show that a failed command changed nothing.
pub fn store_state(root: &Path) -> (serde_json::Value, serde_json::Value, Vec<String>) {
    let images = strata_json(root, &["images"]);
    let layers = strata_json(root, &["layers"]);
    let mut listing = Vec::new();
    let mut stack = vec![root.join("layers")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            listing.push(p.strip_prefix(root).unwrap().display().to_string());
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            }
        }
    }
    listing.sort();
    (images, layers, listing)
}

/// The layer ids of an image, from `strata images --json`.
pub fn image_layers(root: &Path, image: &str) -> Vec<String> {
    let v = strata_json(root, &["images"]);
    let img =
        v["images"].as_array().unwrap().iter().find(|i| i["name"] == image).unwrap_or_else(|| panic!("{image}: {v}"));
    img["layers"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_owned()).collect()
}

/// A layer's directory tree in a store.
pub fn layer_diff(root: &Path, id: &str) -> PathBuf {
    root.join("layers").join(id.trim_start_matches("sha256:")).join("diff")
}

/// Asserts that `image` has the same layers in both stores, every layer's directory
/// identical attribute by attribute.
pub fn assert_same_image(root_a: &Path, root_b: &Path, image_a: &str, image_b: &str) {
    let (la, lb) = (image_layers(root_a, image_a), image_layers(root_b, image_b));
    assert_eq!(la, lb, "layer ids of {image_a} and {image_b}");
    for id in &la {
        assert_same_tree(&layer_diff(root_a, id), &layer_diff(root_b, id));
    }
}

/// How the [`Proxy`] misbehaves.
#[derive(Clone, Debug)]
pub enum ProxyMode {
    /// Passes everything through (and counts).
    Honest,
    /// Drops `Range` headers, as registries behind some object stores do: every blob
    /// request gets the whole blob with 200.
    IgnoreRanges,
    /// Flips the byte at `offset` of blob `digest` in every ranged answer that holds it.
    Corrupt { digest: String, offset: u64 },
}

/// What went through a [`Proxy`].
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Response body bytes of blob requests (what a client fetched).
    pub blob_bytes: AtomicU64,
    pub ranged_requests: AtomicU64,
    pub whole_blob_answers: AtomicU64,
    pub corrupted: AtomicU64,
}

/// An HTTP proxy in front of a registry, one upstream connection per request.
pub struct Proxy {
    addr: String,
    stop: Arc<AtomicBool>,
    pub stats: Arc<ProxyStats>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    pub fn start(upstream: &str, mode: ProxyMode) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(ProxyStats::default());
        let (upstream, stop2, stats2) = (upstream.to_owned(), stop.clone(), stats.clone());
        let mode = Arc::new(mode);
        let accept = std::thread::spawn(move || {
            let workers = Mutex::new(Vec::new());
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (up, st, m) = (upstream.clone(), stats2.clone(), mode.clone());
                workers.lock().unwrap().push(std::thread::spawn(move || {
                    let _ = serve(conn, &up, &m, &st);
                }));
            }
            for w in workers.into_inner().unwrap() {
                let _ = w.join();
            }
        });
        Proxy { addr, stop, stats, accept: Some(accept) }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Serves the requests of one client connection, one upstream connection each.
fn serve(mut client: TcpStream, upstream: &str, mode: &ProxyMode, stats: &ProxyStats) -> std::io::Result<()> {
    let mut pending = Vec::new();
    {
        // One request head (pulls send no bodies).
        let head_end = loop {
            if let Some(i) = find(&pending, b"\r\n\r\n") {
                break i + 4;
            }
            let mut buf = [0u8; 8192];
            let n = client.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            pending.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&pending[..head_end]).into_owned();
        pending.drain(..head_end);
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_owned();
        let path = request_line.split(' ').nth(1).unwrap_or_default().to_owned();
        let mut out = format!("{request_line}\r\n");
        let mut ranged = false;
        for l in lines.filter(|l| !l.is_empty()) {
            let name = l.split(':').next().unwrap_or_default().to_ascii_lowercase();
            if name == "connection" {
                continue;
            }
            if name == "range" {
                ranged = true;
                if matches!(mode, ProxyMode::IgnoreRanges) {
                    continue;
                }
            }
            out.push_str(l);
            out.push_str("\r\n");
        }
        out.push_str("Connection: close\r\n\r\n");
        let is_blob = path.contains("/blobs/sha256:");
        if is_blob && ranged {
            stats.ranged_requests.fetch_add(1, Ordering::Relaxed);
        }
        let mut up = TcpStream::connect(upstream)?;
        up.write_all(out.as_bytes())?;
        let mut resp = Vec::new();
        up.read_to_end(&mut resp)?;
        let body_at = find(&resp, b"\r\n\r\n").map_or(resp.len(), |i| i + 4);
        let resp_head = String::from_utf8_lossy(&resp[..body_at]).into_owned();
        let status = resp_head.split(' ').nth(1).unwrap_or_default().to_owned();
        if is_blob && !request_line.starts_with("HEAD") {
            stats.blob_bytes.fetch_add((resp.len() - body_at) as u64, Ordering::Relaxed);
            if status == "200" && ranged {
                stats.whole_blob_answers.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let ProxyMode::Corrupt { digest, offset } = mode
            && status == "206"
            && path.ends_with(digest.as_str())
            && corrupt(&resp_head, &mut resp[body_at..], *offset)
        {
            stats.corrupted.fetch_add(1, Ordering::Relaxed);
        }
        client.write_all(&resp)?;
        // The answer said `Connection: close`: the client opens a new connection.
        let _ = client.shutdown(Shutdown::Write);
    }
    Ok(())
}

/// `GET http://ADDR/v2/PATH` (one connection); returns status and body.
pub fn http_get(addr: &str, path: &str, accept: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET /v2/{path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let at = find(&resp, b"\r\n\r\n").expect("HTTP answer") + 4;
    let head = String::from_utf8_lossy(&resp[..at]).into_owned();
    assert!(header(&head, "transfer-encoding").is_none(), "chunked answers are not handled here: {head}");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, resp[at..].to_vec())
}

/// `PUT http://ADDR/v2/REPO/manifests/TAG` of an OCI image manifest; returns the status.
pub fn put_manifest(addr: &str, repo: &str, tag: &str, m: &strata_oci::ImageManifest) -> u16 {
    let body = serde_json::to_vec(m).unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "PUT /v2/{repo}/manifests/{tag} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        strata_oci::media::IMAGE_MANIFEST,
        body.len()
    )
    .unwrap();
    s.write_all(&body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    String::from_utf8_lossy(&resp).split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// The image manifest of `repo:tag` in the registry at `addr`.
pub fn manifest(addr: &str, repo: &str, tag: &str) -> strata_oci::ImageManifest {
    let (status, body) = http_get(addr, &format!("{repo}/manifests/{tag}"), strata_oci::media::IMAGE_MANIFEST);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// A blob of `repo`.
pub fn blob(addr: &str, repo: &str, digest: &str) -> Vec<u8> {
    let (status, body) = http_get(addr, &format!("{repo}/blobs/{digest}"), "*/*");
    assert_eq!(status, 200);
    body
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// `bytes A-B/N` → A..B+1
fn content_range(v: &str) -> Option<std::ops::Range<u64>> {
    let r = v.strip_prefix("bytes ")?.split('/').next()?;
    let (a, b) = r.split_once('-')?;
    Some(a.parse().ok()?..b.parse::<u64>().ok()? + 1)
}

/// Flips the byte at blob offset `offset` in a 206 body (single range or multipart).
fn corrupt(head: &str, body: &mut [u8], offset: u64) -> bool {
    let ctype = header(head, "content-type").unwrap_or_default();
    if let Some(b) = ctype.split("boundary=").nth(1) {
        let delim = format!("--{}", b.trim_matches('"'));
        let mut at = 0;
        let mut hit = false;
        while let Some(i) = find(&body[at..], delim.as_bytes()) {
            let part = at + i + delim.len();
            let Some(h_end) = find(&body[part..], b"\r\n\r\n") else { break };
            let part_head = String::from_utf8_lossy(&body[part..part + h_end]).into_owned();
            let data = part + h_end + 4;
            let Some(r) = header(&part_head, "content-range").and_then(content_range) else { break };
            if r.contains(&offset) {
                body[data + (offset - r.start) as usize] ^= 0xff;
                hit = true;
            }
            at = data + (r.end - r.start) as usize;
        }
        return hit;
    }
    match header(head, "content-range").and_then(content_range) {
        Some(r) if r.contains(&offset) => {
            body[(offset - r.start) as usize] ^= 0xff;
            true
        }
        _ => false,
    }
}
