//! Torture: several workers for a while against one store on XFS — pulls from a real
//! registry, imports, containers created, changed and committed, rmi, export, push, gc —
//! some of them SIGKILLed mid-way. Owners come and go with the commands (every command is
//! the owner or a worker of whichever runs). Afterwards: `fsck --full` is clean, every image
//! any worker saw published and did not remove is there and has exactly the files it should,
//! and after removing everything a final gc leaves nothing on disk.
//!
//! `STRATA_TORTURE_SECONDS` (default 30) and `STRATA_TORTURE_WORKERS` (default 6) set the run;
//! run it long by hand. Needs root, mkfs.xfs and docker-registry.

mod common;
#[path = "common/registry.rs"]
mod registry;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use registry::{related_layouts, related_trees};
use strata_testutil::{LoopMount, Registry, require_root, require_tool};

fn env_or(k: &str, d: u64) -> u64 {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

/// A tiny deterministic generator per worker.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What the final check expects of an image: the tree it must show.
#[derive(Clone, Debug)]
enum Expect {
    /// The root filesystem of a source (a, b or c).
    Source(usize),
    /// A source with one file written by a commit.
    Committed { base: usize, file: String, content: Vec<u8> },
}

/// The workers' shared bookkeeping: images that exist for sure, and names whose fate a
/// kill made unknown (whole or absent).
#[derive(Default)]
struct Book {
    live: BTreeMap<String, Expect>,
    unknown: BTreeMap<String, Expect>,
    ops: BTreeMap<&'static str, u64>,
    kills: u64,
}

struct World {
    root: PathBuf,
    layouts: Vec<PathBuf>,
    refs: Vec<String>,
    reg: String,
    scratch: PathBuf,
    book: Mutex<Book>,
}

fn run(root: &Path, args: &[&str]) -> std::process::Output {
    strata(root, args)
}

fn must(root: &Path, args: &[&str]) -> String {
    let out = run(root, args);
    assert!(out.status.success(), "strata {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs a command and SIGKILLs it after `after`; true when it was still running.
fn killed(root: &Path, args: &[&str], after: Duration) -> bool {
    let mut child = Command::new(strata_bin())
        .arg("--root")
        .arg(root)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    running
}

impl World {
    fn note(&self, op: &'static str) {
        *self.book.lock().unwrap().ops.entry(op).or_default() += 1;
    }

    /// An image this worker may use as a base (any live one).
    fn pick_live(&self, rng: &mut Rng) -> Option<(String, Expect)> {
        let b = self.book.lock().unwrap();
        let n = b.live.len() as u64;
        (n > 0).then(|| b.live.iter().nth(rng.below(n) as usize).map(|(k, v)| (k.clone(), v.clone())).unwrap())
    }

    fn step(&self, w: usize, k: u64, rng: &mut Rng) {
        let name = format!("w{w}-{k}");
        let kill = rng.below(8) == 0;
        match rng.below(9) {
            0 | 1 => {
                let s = rng.below(self.layouts.len() as u64) as usize;
                let src = format!("oci:{}:v1", self.layouts[s].display());
                self.create(&name, Expect::Source(s), kill, rng, &["import", &src, "--name", &name]);
                self.note("import");
            }
            2 | 3 => {
                let s = rng.below(self.refs.len() as u64) as usize;
                let r = self.refs[s].clone();
                self.create(&name, Expect::Source(s), kill, rng, &["pull", &r, "--name", &name, "--plain-http"]);
                self.note("pull");
            }
            4 | 5 => {
                let Some((base, expect)) = self.pick_live(rng) else { return };
                let Expect::Source(s) = expect else { return };
                let c = format!("c-{name}");
                if !run(&self.root, &["container", "create", &base, &c]).status.success() {
                    return; // the base was removed meanwhile
                }
                let merged = PathBuf::from(must(&self.root, &["container", "mount", &c]));
                let file = format!("etc/torture-{name}");
                let content = bytes(rng.below(300_000) as usize + 1, rng.next()).to_vec();
                fs::write(merged.join(&file), &content).unwrap();
                let _ = fs::remove_file(merged.join("usr/share/doc/d3.txt"));
                let expect = Expect::Committed { base: s, file, content };
                self.create(&name, expect, kill, rng, &["commit", &c, &name]);
                must(&self.root, &["container", "rm", &c]);
                self.note("commit");
            }
            6 => {
                // rmi one of our own images (others may be using theirs).
                let mine: Vec<String> = {
                    let b = self.book.lock().unwrap();
                    b.live.keys().filter(|n| n.starts_with(&format!("w{w}-"))).cloned().collect()
                };
                if let Some(victim) = mine.get(rng.below(mine.len() as u64) as usize) {
                    let out = run(&self.root, &["rmi", victim]);
                    let err = String::from_utf8_lossy(&out.stderr);
                    if out.status.success() {
                        self.book.lock().unwrap().live.remove(victim);
                    } else {
                        assert!(err.contains("used by container"), "rmi {victim}: {err}");
                    }
                }
                self.note("rmi");
            }
            7 => {
                let Some((img, _)) = self.pick_live(rng) else { return };
                if rng.below(2) == 0 {
                    let dest = self.scratch.join(format!("export-{name}"));
                    let out = run(
                        &self.root,
                        &["export", &img, &format!("oci:{}:x", dest.display()), "--format", "tar+zstd"],
                    );
                    let err = String::from_utf8_lossy(&out.stderr);
                    assert!(out.status.success() || err.contains("no image named"), "export {img}: {err}");
                    let _ = fs::remove_dir_all(&dest);
                    self.note("export");
                } else {
                    let target = format!("{}/torture/{name}:v1", self.reg);
                    let out = run(&self.root, &["push", &img, &target, "--plain-http", "--format", "zstd:chunked"]);
                    let err = String::from_utf8_lossy(&out.stderr);
                    assert!(out.status.success() || err.contains("no image named"), "push {img}: {err}");
                    self.note("push");
                }
            }
            _ => {
                if kill {
                    killed(&self.root, &["gc"], Duration::from_millis(rng.below(400)));
                    self.book.lock().unwrap().kills += 1;
                } else {
                    must(&self.root, &["gc"]);
                }
                self.note("gc");
            }
        }
    }

    /// Runs a command that creates image `name`; killed at a random moment when `kill`.
    fn create(&self, name: &str, expect: Expect, kill: bool, rng: &mut Rng, args: &[&str]) {
        if kill {
            let ran = killed(&self.root, args, Duration::from_millis(rng.below(1500)));
            let mut b = self.book.lock().unwrap();
            b.kills += u64::from(ran);
            b.unknown.insert(name.to_owned(), expect);
            return;
        }
        must(&self.root, args);
        self.book.lock().unwrap().live.insert(name.to_owned(), expect);
    }
}

/// Checks that image `name` shows exactly the tree `expect` describes, through a container
/// on it (overlay, as a runtime would see it). Modes, owners, content, links and xattrs are
/// compared; times are not (a commit changes the times of what it touches).
fn check_image(root: &Path, name: &str, expect: &Expect, trees: &[PathBuf]) {
    let c = format!("check-{name}");
    must(root, &["container", "create", name, &c]);
    let merged = PathBuf::from(must(root, &["container", "mount", &c]));
    let strip = |m: BTreeMap<String, String>| -> BTreeMap<String, String> {
        m.into_iter()
            .map(|(k, v)| (k, v.split(' ').filter(|f| !f.starts_with("mtime=")).collect::<Vec<_>>().join(" ")))
            .collect()
    };
    let mut got = strip(snapshot(&merged));
    let (base, extra) = match expect {
        Expect::Source(s) => (*s, None),
        Expect::Committed { base, file, content } => (*base, Some((file, content))),
    };
    let mut want = strip(snapshot(&trees[base]));
    if let Some((file, content)) = extra {
        assert_eq!(&fs::read(merged.join(file)).unwrap(), content, "{name}: the committed file");
        assert!(got.remove(file.as_str()).is_some());
        assert!(!merged.join("usr/share/doc/d3.txt").exists(), "{name}: the committed deletion");
        want.remove("usr/share/doc/d3.txt");
    }
    if got != want {
        let diffs: Vec<String> = want
            .iter()
            .filter(|(k, v)| got.get(*k) != Some(v))
            .map(|(k, v)| format!("{k}: want {v}, got {:?}", got.get(k)))
            .chain(got.keys().filter(|k| !want.contains_key(*k)).map(|k| format!("extra {k}")))
            .take(10)
            .collect();
        panic!("image {name} differs from what it should be:\n{}", diffs.join("\n"));
    }
    must(root, &["container", "rm", &c]);
}

#[test]
fn workers_pull_import_commit_remove_push_and_collect_at_once() {
    if !require_root() || !require_tool("mkfs.xfs") || !require_tool("docker-registry") {
        return;
    }
    let seconds = env_or("STRATA_TORTURE_SECONDS", 30);
    let workers = env_or("STRATA_TORTURE_WORKERS", 6) as usize;
    let m = LoopMount::xfs(6144);
    let reg = Registry::start();
    let t = related_trees(m.path());
    let (la, lb, lc) = related_layouts(m.path(), &t);
    // The registry gets the three images as zstd:chunked (pushed from a store of their own).
    let seed = m.path().join("seed");
    let mut refs = Vec::new();
    for (l, n) in [(&la, "a"), (&lb, "b"), (&lc, "c")] {
        must(&seed, &["import", &format!("oci:{}:v1", l.display()), "--name", n]);
        let r = format!("{}/src/{n}:v1", reg.addr());
        must(&seed, &["push", n, &r, "--format", "zstd:chunked", "--plain-http"]);
        refs.push(r);
    }
    let scratch = m.path().join("scratch");
    fs::create_dir_all(&scratch).unwrap();
    let world = Arc::new(World {
        root: m.path().join("store"),
        layouts: vec![la, lb, lc],
        refs,
        reg: reg.addr().to_owned(),
        scratch: scratch.clone(),
        book: Mutex::default(),
    });
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let world = Arc::clone(&world);
            std::thread::spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((w as u64 + 1) * 0x2545_F491));
                let mut k = 0;
                while Instant::now() < deadline {
                    world.step(w, k, &mut rng);
                    k += 1;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a worker failed");
    }
    let root = world.root.clone();
    let book = world.book.lock().unwrap();
    eprintln!("torture: {workers} workers, {seconds} s: {:?}, {} kills", book.ops, book.kills);

    // Everything consistent, every live image exactly right, killed ones whole or absent.
    let f = strata_json(&root, &["fsck", "--full"]);
    assert_eq!(f["ok"], true, "{f}");
    let present: Vec<String> = strata_json(&root, &["images"])["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect();
    let trees = [t.a.clone(), t.b.clone(), t.c.clone()];
    let layers_of: BTreeMap<String, serde_json::Value> = strata_json(&root, &["images"])["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["name"].as_str().unwrap().to_owned(), i["layers"].clone()))
        .collect();
    // Images of one source share their layers (content-addressed): one of each is checked
    // file by file, the others must have its very layers. Every committed image is checked.
    let mut checked: BTreeMap<usize, serde_json::Value> = BTreeMap::new();
    for (name, expect) in book.live.iter().chain(book.unknown.iter().filter(|(n, _)| present.contains(n))) {
        assert!(present.contains(name), "image {name} was published and not removed, but is gone");
        if let Expect::Source(s) = expect
            && let Some(layers) = checked.get(s)
        {
            assert_eq!(&layers_of[name], layers, "image {name}: not the layers of its source");
            continue;
        }
        check_image(&root, name, expect, &trees);
        if let Expect::Source(s) = expect {
            checked.insert(*s, layers_of[name].clone());
        }
    }
    for name in &present {
        assert!(book.live.contains_key(name) || book.unknown.contains_key(name), "unexpected image {name}");
    }

    // Remove everything: a final gc leaves nothing behind.
    for name in &present {
        must(&root, &["rmi", name]);
    }
    let g = strata_json(&root, &["gc"]);
    let df = strata_json(&root, &["df"]);
    assert_eq!(
        (df["images"].as_u64(), df["layers"].as_u64(), df["chunks"].as_u64()),
        (Some(0), Some(0), Some(0)),
        "{df} {g}"
    );
    assert_eq!(fs::read_dir(root.join("layers")).unwrap().count(), 0, "layer directories left after gc");
    let staging: Vec<_> = fs::read_dir(root.join("staging")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(staging.is_empty(), "staging left after gc: {staging:?}");
    assert!(book.kills > 0 || seconds < 10, "no kill landed mid-operation");
}
