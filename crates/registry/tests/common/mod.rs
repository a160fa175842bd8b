//! Test fixtures: a tiny HTTP/1.1 server on 127.0.0.1 (std::net, one request per
//! connection) used as a proxy in front of a real docker-registry, to make it misbehave in
//! controlled ways; deterministic test data; client construction.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use strata_registry::{Client, ClientOptions};

#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn set_header(&mut self, name: &str, value: &str) {
        self.remove_header(name);
        self.headers.push((name.to_owned(), value.to_owned()));
    }
    pub fn remove_header(&mut self, name: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }
    /// The number of ranges in the Range header.
    pub fn range_count(&self) -> usize {
        self.header("range").map_or(0, |r| r.split(',').count())
    }
}

#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Written after `body`, for hostile servers (see [`HttpResponse::with_stream`]).
    pub stream: Option<StreamBody>,
}

/// A body produced while it is sent: `pattern` repeated up to `len` bytes (forever when
/// `None`), or until the client hangs up.
#[derive(Clone, Debug)]
pub struct StreamBody {
    pub pattern: Vec<u8>,
    pub len: Option<u64>,
}

impl HttpResponse {
    pub fn new(status: u16) -> Self {
        HttpResponse { status, headers: Vec::new(), body: Vec::new(), stream: None }
    }
    /// After `body`, sends `pattern` over and over, `len` bytes in all or without end. No
    /// Content-Length goes out unless the handler sets one: the body ends when the
    /// connection does, as a server may send it (and a hostile one may never end it).
    pub fn with_stream(mut self, pattern: &[u8], len: Option<u64>) -> Self {
        assert!(!pattern.is_empty());
        self.stream = Some(StreamBody { pattern: pattern.to_vec(), len });
        self
    }
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn set_header(&mut self, name: &str, value: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value.to_owned()));
    }
}

type Handler = dyn Fn(HttpRequest) -> HttpResponse + Send + Sync;

/// An HTTP server on 127.0.0.1; stops accepting on drop.
pub struct Server {
    addr: String,
    stop: Arc<AtomicBool>,
    pub requests: Arc<AtomicUsize>,
}

impl Server {
    pub fn start(handler: impl Fn(HttpRequest) -> HttpResponse + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let handler: Arc<Handler> = Arc::new(handler);
        let (stop2, requests2) = (Arc::clone(&stop), Arc::clone(&requests));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let handler = Arc::clone(&handler);
                let requests = Arc::clone(&requests2);
                std::thread::spawn(move || serve(conn, &*handler, &requests));
            }
        });
        Server { addr, stop, requests }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn request_count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
    }
}

fn serve(conn: TcpStream, handler: &Handler, requests: &AtomicUsize) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let Some(req) = read_request(&mut reader) else { return };
    requests.fetch_add(1, Ordering::SeqCst);
    let head = req.method == "HEAD";
    let resp = handler(req);
    let mut out = conn;
    let mut msg = format!("HTTP/1.1 {} X\r\n", resp.status).into_bytes();
    for (k, v) in &resp.headers {
        if k.eq_ignore_ascii_case("connection") || k.eq_ignore_ascii_case("transfer-encoding") {
            continue;
        }
        msg.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    if resp.header("content-length").is_none() && resp.stream.is_none() {
        msg.extend_from_slice(format!("Content-Length: {}\r\n", resp.body.len()).as_bytes());
    }
    msg.extend_from_slice(b"Connection: close\r\n\r\n");
    if !head {
        msg.extend_from_slice(&resp.body);
    }
    // The client may hang up early (it stops reading a whole blob after the last range).
    let _ = out.write_all(&msg);
    if let (Some(stream), false) = (&resp.stream, head) {
        // A client that stops reading without hanging up must not keep this thread forever.
        let _ = out.set_write_timeout(Some(Duration::from_secs(30)));
        let mut chunk = Vec::with_capacity(64 << 10);
        while chunk.len() < 64 << 10 {
            chunk.extend_from_slice(&stream.pattern);
        }
        let mut left = stream.len.unwrap_or(u64::MAX);
        while left > 0 {
            let n = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            if out.write_all(&chunk[..n]).is_err() {
                break;
            }
            left -= n as u64;
        }
    }
    let _ = out.flush();
}

fn read_request(r: &mut impl BufRead) -> Option<HttpRequest> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut it = line.split_whitespace();
    let (method, target) = (it.next()?.to_owned(), it.next()?.to_owned());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let mut req = HttpRequest { method, target, headers, body: Vec::new() };
    assert!(req.header("transfer-encoding").is_none(), "the test server does not take chunked request bodies");
    if let Some(len) = req.header("content-length").and_then(|v| v.parse::<u64>().ok()) {
        r.take(len).read_to_end(&mut req.body).ok()?;
    }
    Some(req)
}

/// Sends `req` to `upstream` (HTTP/1.0, so the answer ends with the connection) and returns
/// the answer with its body complete. The Host header is passed on unchanged, so
/// docker-registry builds its Location URLs for the proxy.
pub fn forward(upstream: &str, req: &HttpRequest) -> HttpResponse {
    let mut s = TcpStream::connect(upstream).unwrap();
    let mut msg = format!("{} {} HTTP/1.0\r\n", req.method, req.target).into_bytes();
    for (k, v) in &req.headers {
        if ["connection", "content-length", "keep-alive"].iter().any(|h| k.eq_ignore_ascii_case(h)) {
            continue;
        }
        msg.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    msg.extend_from_slice(format!("Content-Length: {}\r\nConnection: close\r\n\r\n", req.body.len()).as_bytes());
    msg.extend_from_slice(&req.body);
    s.write_all(&msg).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("upstream answer without headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut resp = HttpResponse::new(status);
    for l in lines {
        let (k, v) = l.split_once(':').unwrap();
        let keep_length = req.method == "HEAD";
        if k.eq_ignore_ascii_case("content-length") && !keep_length {
            continue;
        }
        resp.headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    resp.body = body;
    resp
}

/// Runs `f` on a thread of its own and fails the test when it has not returned within a
/// minute: a client that reads forever must fail its test, not hang the run. (A watchdog,
/// not a timing assertion: every bounded case here finishes in well under a second.)
pub fn within_a_minute<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("{what}: still running after a minute"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

/// The peak resident set size of this process so far (VmHWM), in bytes.
pub fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/self/status");
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// The ranges of a request's `Range: bytes=a-b,...` header, half-open.
pub fn requested_ranges(req: &HttpRequest) -> Vec<std::ops::Range<u64>> {
    let Some(spec) = req.header("range") else { return Vec::new() };
    spec.trim_start_matches("bytes=")
        .split(',')
        .map(|p| {
            let (a, b) = p.trim().split_once('-').unwrap();
            a.parse::<u64>().unwrap()..b.parse::<u64>().unwrap() + 1
        })
        .collect()
}

/// Deterministic pseudo-random bytes (xorshift64*).
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// A scratch directory and an auth file in it (empty unless given entries), so tests do not
/// depend on the auth files of the machine.
pub struct AuthDir {
    pub dir: tempfile::TempDir,
}

impl AuthDir {
    pub fn new(entries: &[(&str, &str, &str)]) -> AuthDir {
        use base64::Engine as _;
        let dir = tempfile::tempdir().unwrap();
        let auths: serde_json::Map<String, serde_json::Value> = entries
            .iter()
            .map(|(host, user, pass)| {
                let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
                ((*host).to_owned(), serde_json::json!({ "auth": auth }))
            })
            .collect();
        std::fs::write(dir.path().join("auth.json"), serde_json::json!({ "auths": auths }).to_string()).unwrap();
        AuthDir { dir }
    }
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("auth.json")
    }
}

/// Options for loopback tests: plain http, an isolated auth file, quick retries.
pub fn options(auth: &AuthDir) -> ClientOptions {
    ClientOptions {
        plain_http: true,
        auth_file: Some(auth.path()),
        retry_base_delay: Duration::from_millis(20),
        retry_max_delay: Duration::from_millis(200),
        ..ClientOptions::default()
    }
}

pub fn client(addr: &str, auth: &AuthDir) -> Client {
    Client::new(addr, options(auth)).unwrap()
}

/// An image pushed by [`push_image`].
pub struct PushedImage {
    pub config: Vec<u8>,
    pub layers: Vec<Vec<u8>>,
    pub manifest: strata_oci::ImageManifest,
    pub manifest_bytes: Vec<u8>,
    pub digest: strata_types::Sha256Digest,
}

pub fn image_manifest(config: &[u8], layers: &[Vec<u8>]) -> strata_oci::ImageManifest {
    use strata_oci::{Descriptor, media};
    use strata_types::Sha256Digest;
    strata_oci::ImageManifest {
        schema_version: 2,
        media_type: Some(media::IMAGE_MANIFEST.into()),
        config: Descriptor::new(media::IMAGE_CONFIG, Sha256Digest::of(config), config.len() as u64),
        layers: layers
            .iter()
            .map(|l| Descriptor::new(media::LAYER_TAR_ZSTD, Sha256Digest::of(l), l.len() as u64))
            .collect(),
        annotations: Default::default(),
        extra: Default::default(),
    }
}

/// Pushes a config, layers of the given sizes and a manifest tagged `tag`.
pub fn push_image(c: &Client, repo: &str, tag: &str, layer_sizes: &[usize], seed: u64) -> PushedImage {
    use strata_registry::ManifestRef;
    let layers: Vec<Vec<u8>> = layer_sizes.iter().enumerate().map(|(i, &n)| data(n, seed + i as u64 + 1)).collect();
    let diff_ids = layers.iter().map(|l| strata_types::Sha256Digest::of(l)).collect();
    let mut cfg = strata_oci::ImageConfig::new(diff_ids);
    cfg.created = Some(format!("seed {seed}"));
    let config = serde_json::to_vec(&cfg).unwrap();
    c.push_blob_bytes(repo, &config).unwrap();
    for l in &layers {
        let d = strata_types::Sha256Digest::of(l);
        c.push_blob(repo, &d, l.len() as u64, None, || Ok(&l[..])).unwrap();
    }
    let manifest = image_manifest(&config, &layers);
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = c
        .put_manifest(repo, &ManifestRef::Tag(tag.into()), strata_oci::media::IMAGE_MANIFEST, &manifest_bytes)
        .unwrap();
    PushedImage { config, layers, manifest, manifest_bytes, digest }
}

/// A docker-registry, or `None` (test skipped) when it is not installed.
pub fn registry() -> Option<strata_testutil::Registry> {
    strata_testutil::require_tool("docker-registry").then(strata_testutil::Registry::start)
}
