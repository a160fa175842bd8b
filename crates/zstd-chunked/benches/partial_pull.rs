//! podman 5.4 partial pulls of strata-written vs skopeo-written zstd:chunked layers
//! (`cargo bench -p strata-zstd-chunked --bench partial_pull`, as root, after `make peers`).
//!
//! For each producer, rootfs-a and rootfs-b are pushed to a private docker-registry; podman
//! (fresh storage on the fixtures' XFS mount, partial pulls on) pulls a, then b. Reported: the
//! bytes of b's layer blob the registry sent (from its access log) and the wall time of
//! b's pull. strata chunks with FastCDC, containers/storage with its rolling checksum; both
//! reuse whole files and chunks of a already in the store.

use std::collections::BTreeMap;
use std::io::{BufReader, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use strata_layer::parse::TarReader;
use strata_oci::layout::OciDir;
use strata_oci::{Descriptor, ImageConfig, ImageManifest, media};
use strata_zstd_chunked::{WriterOptions, ZstdChunkedWriter};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The scratch directory, seen as /data inside the trixie chroot.
fn trixie(peers: &strata_testutil::Peers, host: &Path, script: &str) -> String {
    peers.trixie_ok(host, script)
}

/// A docker-registry with access logging, killed on drop.
struct LoggingRegistry {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl LoggingRegistry {
    fn start(dir: &Path) -> LoggingRegistry {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: info}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\nhttp: {{addr: {addr}}}\n",
                dir.join("registry-data").display()
            ),
        )
        .unwrap();
        let log = dir.join("registry.log");
        let f = std::fs::File::create(&log).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .expect("docker-registry");
        let t = Instant::now();
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(t.elapsed() < Duration::from_secs(20), "registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        LoggingRegistry { child, addr, log }
    }

    /// Bytes sent for GETs of blobs of `repo` in log lines after byte `from` of the log.
    fn blob_bytes_since(&self, repo: &str, from: usize) -> u64 {
        let log = std::fs::read_to_string(&self.log).unwrap();
        let needle = format!("\"GET /v2/{repo}/blobs/");
        log[from..]
            .lines()
            .filter(|l| l.contains(&needle))
            // `... "GET /v2/... HTTP/1.1" 206 486605 "" "agent"`: the number after the status.
            .filter_map(|l| l.split_once("HTTP/1.1\" ").and_then(|(_, rest)| rest.split(' ').nth(1)))
            .filter_map(|n| n.parse::<u64>().ok())
            .sum()
    }

    fn log_len(&self) -> usize {
        std::fs::metadata(&self.log).map_or(0, |m| m.len() as usize)
    }
}

impl Drop for LoggingRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `tar` with strata's writer into a one-image layout at `layout`; returns the blob size.
fn write_layout(tar: &Path, layout: &Path) -> u64 {
    let dir = OciDir::create(layout).unwrap();
    let w = ZstdChunkedWriter::new(dir.blob_writer().unwrap(), WriterOptions::default()).unwrap();
    let mut r = TarReader::with_tap(BufReader::new(std::fs::File::open(tar).unwrap()), w);
    while r.next_header().unwrap().is_some() {}
    let (blob_writer, result) = r.into_tap().finish().unwrap();
    let (digest, size) = blob_writer.finish(Some(&result.blob_digest)).unwrap();
    let mut layer = Descriptor::new(media::LAYER_TAR_ZSTD, digest, size);
    layer.annotations = result.annotations.clone();
    let config = dir.write_json_blob(media::IMAGE_CONFIG, &ImageConfig::new(vec![result.diff_id])).unwrap();
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(media::IMAGE_MANIFEST.into()),
        config,
        layers: vec![layer],
        annotations: BTreeMap::new(),
        extra: BTreeMap::new(),
    };
    let desc = dir.write_json_blob(media::IMAGE_MANIFEST, &manifest).unwrap();
    dir.set_tag("t", &desc).unwrap();
    size
}

fn main() {
    if !nix_is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let Some(peers) = strata_testutil::Peers::require() else { return };
    let tars = [peers.tar(strata_testutil::Rootfs::A), peers.tar(strata_testutil::Rootfs::B)];
    // On the fixtures' XFS when it is mounted (reflinks for podman), else the scratch base.
    let xfs = strata_testutil::peers_dir().join("xfs");
    let base = if is_xfs(&xfs) { xfs } else { strata_testutil::scratch_base() };
    let scratch = tempfile::Builder::new().prefix("zchunked-bench-").tempdir_in(base).unwrap();
    let host = scratch.path().to_path_buf();
    let reg = LoggingRegistry::start(&host);
    let sp = "/data";

    let mut b_size = BTreeMap::new();
    for (tar, which) in tars.iter().zip(["rootfs-a", "rootfs-b"]) {
        let size = write_layout(tar, &host.join(which));
        b_size.insert(("strata", which), size);
        trixie(
            &peers,
            &host,
            &format!(
                "skopeo copy -q --preserve-digests --dest-tls-verify=false oci:{sp}/{which}:t docker://{}/strata/{which}:t",
                reg.addr
            ),
        );
        trixie(
            &peers,
            &host,
            &format!(
                "mkdir -p /var/lib/containers && mount -t tmpfs tmpfs /var/lib/containers && \
                 skopeo copy -q --dest-tls-verify=false --dest-compress-format zstd:chunked \
                 oci:/peers/{which}:latest docker://{}/skopeo/{which}:t",
                reg.addr
            ),
        );
        let inspect = trixie(
            &peers,
            &host,
            &format!("skopeo inspect --raw --tls-verify=false docker://{}/skopeo/{which}:t", reg.addr),
        );
        let m: ImageManifest = serde_json::from_str(&inspect).unwrap();
        b_size.insert(("skopeo", which), m.layers[0].size);
    }

    println!("| layers written by | b's blob | fetched for b after a | pull of b (s) |");
    println!("|---|---|---|---|");
    for producer in ["skopeo", "strata"] {
        let store = format!("/data/{producer}");
        let mut conf = std::fs::File::create(host.join(format!("storage-{producer}.conf"))).unwrap();
        write!(
            conf,
            "[storage]\ndriver = \"overlay\"\nrunroot = \"{store}/run\"\ngraphroot = \"{store}/root\"\n\
             [storage.options]\npull_options = {{enable_partial_images = \"true\", use_hard_links = \"false\", ostree_repos = \"\"}}\n"
        )
        .unwrap();
        std::fs::write(
            host.join("registries.conf"),
            format!("unqualified-search-registries = []\n[[registry]]\nlocation = \"{}\"\ninsecure = true\n", reg.addr),
        )
        .unwrap();
        let env = format!(
            "export CONTAINERS_STORAGE_CONF={sp}/storage-{producer}.conf CONTAINERS_REGISTRIES_CONF={sp}/registries.conf \
             TMPDIR=/data/tmp; mkdir -p /data/tmp;"
        );
        trixie(&peers, &host, &format!("{env} podman pull -q {}/{producer}/rootfs-a:t", reg.addr));
        let mark = reg.log_len();
        let t = Instant::now();
        trixie(&peers, &host, &format!("{env} podman pull -q {}/{producer}/rootfs-b:t", reg.addr));
        let secs = t.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_millis(300));
        let fetched = reg.blob_bytes_since(&format!("{producer}/rootfs-b"), mark);
        let total = b_size[&(producer, "rootfs-b")];
        println!(
            "| {producer} | {:.1} MB | {:.1} MB ({:.0}%) | {secs:.2} |",
            total as f64 / 1e6,
            fetched as f64 / 1e6,
            100.0 * fetched as f64 / total as f64
        );
    }
    drop(reg);
    // podman's storage holds files only root may remove through its own tool.
    let _ = peers.trixie_sh(
        &host,
        "for p in strata skopeo; do CONTAINERS_STORAGE_CONF=/data/storage-$p.conf podman system reset -f; done",
    );
}

fn is_xfs(p: &Path) -> bool {
    Command::new("stat").args(["-f", "-c", "%T"]).arg(p).output().is_ok_and(|o| o.stdout.starts_with(b"xfs"))
}

fn nix_is_root() -> bool {
    run(Command::new("id").arg("-u")).trim() == "0"
}
