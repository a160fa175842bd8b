//! Shared test helpers: a raw tar builder (any name, any typeflag, broken on purpose if
//! asked), tree snapshots compared attribute by attribute, and a sandbox whose outside is
//! watched by a sentinel.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use strata_types::Sha256Digest;

/// Header fields of one raw entry.
#[derive(Clone, Debug)]
pub struct H {
    pub name: Vec<u8>,
    pub typeflag: u8,
    pub size: u64,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub link: Vec<u8>,
    pub dev: (u32, u32),
}

impl H {
    pub fn new(name: impl AsRef<[u8]>, typeflag: u8) -> H {
        H {
            name: name.as_ref().to_vec(),
            typeflag,
            size: 0,
            mode: if typeflag == b'5' { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
            link: Vec::new(),
            dev: (0, 0),
        }
    }
}

/// Builds tar streams block by block.
#[derive(Default, Debug)]
pub struct TarBuilder {
    pub buf: Vec<u8>,
}

impl TarBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A ustar header block for `h` (name and link must fit their fields).
    pub fn header_block(h: &H) -> [u8; 512] {
        let mut t = tar::Header::new_ustar();
        assert!(h.name.len() <= 100 && h.link.len() <= 100, "use PAX for long names");
        t.as_old_mut().name[..h.name.len()].copy_from_slice(&h.name);
        t.as_old_mut().linkname[..h.link.len()].copy_from_slice(&h.link);
        t.set_mode(h.mode);
        t.set_uid(h.uid);
        t.set_gid(h.gid);
        t.set_size(h.size);
        t.set_mtime(h.mtime);
        t.set_entry_type(tar::EntryType::new(h.typeflag));
        t.set_device_major(h.dev.0).unwrap();
        t.set_device_minor(h.dev.1).unwrap();
        t.set_cksum();
        *t.as_bytes()
    }

    pub fn header(&mut self, h: &H) -> &mut Self {
        self.buf.extend_from_slice(&Self::header_block(h));
        self
    }

    /// A header block changed by `f` after its checksum was set (to break it on purpose).
    pub fn header_raw(&mut self, h: &H, f: impl FnOnce(&mut [u8; 512])) -> &mut Self {
        let mut b = Self::header_block(h);
        f(&mut b);
        self.buf.extend_from_slice(&b);
        self
    }

    /// Payload plus padding to the next block.
    pub fn data(&mut self, data: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(data);
        self.buf.resize(self.buf.len().next_multiple_of(512), 0);
        self
    }

    /// A PAX `x` header with these records.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let data: Vec<u8> = records.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
        let mut h = H::new("PaxHeaders/x", b'x');
        h.size = data.len() as u64;
        self.header(&h).data(&data)
    }

    pub fn file(&mut self, name: impl AsRef<[u8]>, data: &[u8]) -> &mut Self {
        let mut h = H::new(name, b'0');
        h.size = data.len() as u64;
        self.header(&h).data(data)
    }

    pub fn dir(&mut self, name: impl AsRef<[u8]>) -> &mut Self {
        self.header(&H::new(name, b'5'))
    }

    pub fn symlink(&mut self, name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> &mut Self {
        let mut h = H::new(name, b'2');
        h.link = target.as_ref().to_vec();
        self.header(&h)
    }

    pub fn hardlink(&mut self, name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> &mut Self {
        let mut h = H::new(name, b'1');
        h.link = target.as_ref().to_vec();
        self.header(&h)
    }

    pub fn chardev(&mut self, name: impl AsRef<[u8]>, major: u32, minor: u32) -> &mut Self {
        let mut h = H::new(name, b'3');
        h.dev = (major, minor);
        self.header(&h)
    }

    /// The end-of-archive marker.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        out.extend_from_slice(&[0; 1024]);
        out
    }
}

pub fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = [key.as_bytes(), b"=", value, b"\n"].concat();
    let mut len = body.len() + 2;
    while body.len() + 1 + len.to_string().len() != len {
        len = body.len() + 1 + len.to_string().len();
    }
    [format!("{len} ").as_bytes(), &body].concat()
}

/// Everything `lstat` and the xattr calls say about one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: Option<(i64, i64)>,
    pub size: u64,
    pub content: Option<Sha256Digest>,
    pub link: Option<Vec<u8>>,
    pub rdev: Option<(u64, u64)>,
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// For inodes with several names: the first name (in walk order) of the inode.
    pub link_group: Option<String>,
}

/// What [`snapshot`] records.
#[derive(Clone, Copy, Debug)]
pub struct SnapOpts {
    pub dir_mtimes: bool,
    pub xattrs: bool,
}

pub const FULL: SnapOpts = SnapOpts { dir_mtimes: true, xattrs: true };

/// Every object below `root` ("." is root itself), by relative path, in sorted order.
pub fn snapshot(root: &Path, opts: SnapOpts) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<(u64, u64), String> = HashMap::new();
    walk(root, root, opts, &mut out, &mut inodes);
    out
}

fn walk(
    root: &Path,
    p: &Path,
    opts: SnapOpts,
    out: &mut BTreeMap<String, Node>,
    inodes: &mut HashMap<(u64, u64), String>,
) {
    let md = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
    let rel = p.strip_prefix(root).unwrap();
    let rel = if rel.as_os_str().is_empty() { ".".to_owned() } else { rel.to_string_lossy().into_owned() };
    let ft = md.file_type();
    use std::os::unix::fs::FileTypeExt;
    let kind = if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_file() {
        "file"
    } else if ft.is_char_device() {
        "char"
    } else if ft.is_block_device() {
        "block"
    } else if ft.is_fifo() {
        "fifo"
    } else {
        "socket"
    };
    let link_group = (!ft.is_dir() && md.nlink() > 1)
        .then(|| inodes.entry((md.dev(), md.ino())).or_insert_with(|| rel.clone()).clone());
    let xattrs = if opts.xattrs {
        xattr::list(p)
            .map(|names| {
                names
                    .filter_map(|n| {
                        let v = xattr::get(p, &n).ok().flatten()?;
                        Some((n.to_string_lossy().into_owned(), v))
                    })
                    .collect()
            })
            .unwrap_or_default()
    } else {
        BTreeMap::new()
    };
    let node = Node {
        kind,
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        mtime: (!ft.is_dir() || opts.dir_mtimes).then(|| (md.mtime(), md.mtime_nsec())),
        size: if ft.is_file() { md.len() } else { 0 },
        content: ft.is_file().then(|| Sha256Digest::of(&std::fs::read(p).unwrap())),
        link: ft
            .is_symlink()
            .then(|| std::os::unix::ffi::OsStrExt::as_bytes(std::fs::read_link(p).unwrap().as_os_str()).to_vec()),
        rdev: (ft.is_char_device() || ft.is_block_device())
            .then(|| (nix::sys::stat::major(md.rdev()), nix::sys::stat::minor(md.rdev()))),
        xattrs,
        link_group,
    };
    out.insert(rel, node);
    if ft.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(p).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        for n in names {
            walk(root, &p.join(n), opts, out, inodes);
        }
    }
}

/// Asserts two snapshots are equal, listing every difference.
pub fn assert_same(expected: &BTreeMap<String, Node>, actual: &BTreeMap<String, Node>, what: &str) {
    let mut diffs = Vec::new();
    for (k, e) in expected {
        match actual.get(k) {
            None => diffs.push(format!("missing: {k}")),
            Some(a) if a != e => diffs.push(format!("differs: {k}\n  expected {e:?}\n  actual   {a:?}")),
            _ => {}
        }
    }
    for k in actual.keys().filter(|k| !expected.contains_key(*k)) {
        diffs.push(format!("unexpected: {k}"));
    }
    assert!(
        diffs.is_empty(),
        "{what}: {} differences:\n{}",
        diffs.len(),
        diffs.iter().take(30).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// A temporary directory with `root/` (where layers go) next to `outside/` (a sentinel tree
/// that no layer may touch).
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub outside: PathBuf,
    before: BTreeMap<String, Node>,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::Builder::new().prefix("strata-apply-").tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir_all(outside.join("sub")).unwrap();
        std::fs::write(outside.join("secret"), b"do not touch").unwrap();
        std::fs::write(outside.join("sub/deep"), b"deep").unwrap();
        std::fs::write(dir.path().join("passwd"), b"root:x:0:0").unwrap();
        let mut s = Sandbox { dir, root, outside, before: BTreeMap::new() };
        s.before = s.outside_snapshot();
        s
    }

    /// The sandbox minus `root/`.
    fn outside_snapshot(&self) -> BTreeMap<String, Node> {
        let mut snap = snapshot(self.dir.path(), FULL);
        snap.retain(|k, _| k != "root" && !k.starts_with("root/"));
        snap
    }

    /// Asserts nothing outside `root/` was created, deleted or modified.
    pub fn assert_outside_untouched(&self) {
        assert_same(&self.before, &self.outside_snapshot(), "the sandbox outside the extraction root");
    }

    /// Absolute path of the sandbox, as bytes (to build escaping names).
    pub fn abs(&self) -> Vec<u8> {
        std::os::unix::ffi::OsStrExt::as_bytes(self.dir.path().as_os_str()).to_vec()
    }
}

/// `tar --xattrs --numeric-owner --format=pax` of the contents of `dir`.
pub fn gnu_tar(dir: &Path) -> Vec<u8> {
    let out = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "--format=pax", "-C"])
        .arg(dir)
        .args(["-cf", "-", "."])
        .output()
        .expect("run tar");
    assert!(out.status.success(), "tar failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// One observer event of an import, as the store turns it into a record: the path the
/// record is about, and what it says there.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Event {
    Entry(String),
    Implicit(String),
    Whiteout(String),
    Opaque(String),
    Skipped(String),
}

/// What an import reported.
#[derive(Debug)]
pub struct Imported {
    pub events: Vec<Event>,
    /// The entries of `Applied::Entry` events, as reported.
    pub entries: Vec<strata_types::Entry>,
    /// The tar-split recorded while applying.
    pub tarsplit: Vec<u8>,
    pub stats: strata_layer::apply::ApplyStats,
}

/// Applies `tar` into `root` the way the store imports a layer: `opts` (overlay mode in the
/// store), tar-split recorded by the tap, every observer event collected.
pub fn import(
    root: &Path,
    tar: &[u8],
    opts: &strata_layer::apply::ApplyOptions,
) -> Result<Imported, strata_layer::apply::ApplyError> {
    use strata_layer::apply::{Applied, CopyContent, apply};
    let mut recorder = strata_layer::tarsplit::TarSplitRecorder::new(Vec::new());
    let (mut events, mut entries) = (Vec::new(), Vec::new());
    let stats = apply(root, tar, opts, &mut CopyContent, Some(&mut recorder), &mut |a| {
        events.push(match a {
            Applied::Entry { entry, .. } => {
                entries.push(entry.clone());
                Event::Entry(entry.path.to_string())
            }
            Applied::ImplicitDir { path } => Event::Implicit(path.to_string()),
            Applied::Whiteout { target, .. } => Event::Whiteout(target.to_string()),
            Applied::Opaque { dir, .. } => Event::Opaque(dir.to_string()),
            Applied::Skipped { entry } => Event::Skipped(entry.path.to_string()),
        });
        Ok(())
    })?;
    let tarsplit = recorder.finish().expect("tar-split finishes");
    Ok(Imported { events, entries, tarsplit, stats })
}

/// Rebuilds the tar stream of an imported layer from its tar-split and the files below
/// `root`, opened as the store's export opens them (normalized name, no symlink followed).
pub fn regenerate_from(root: &Path, tarsplit: &[u8]) -> Result<Vec<u8>, strata_layer::tarsplit::TarSplitError> {
    use std::os::unix::fs::OpenOptionsExt;
    use strata_layer::tarsplit::{RecordReader, regenerate};
    let open = |name: &[u8], _size: u64| -> std::io::Result<Option<(std::fs::File, u64)>> {
        let rel = strata_types::RelPath::new(name).map_err(std::io::Error::other)?;
        let f = std::fs::File::options().read(true).custom_flags(libc::O_NOFOLLOW).open(root.join(rel.as_path()))?;
        Ok(Some((f, 0)))
    };
    let mut out = strata_layer::out_file::WriteTarOut::new(Vec::new());
    regenerate(RecordReader::new(tarsplit), open, &mut out, true)?;
    Ok(out.into_inner().expect("a Vec does not fail"))
}

/// "Accepted means consistent", as the store checks it after an overlay-mode import: the
/// layer's tar-split and files rebuild `tar` byte for byte, every path has at most one
/// object record and at most one marker, never a whiteout where the layer has an object,
/// and every record agrees with what is on disk.
pub fn assert_consistent(root: &Path, tar: &[u8], imp: &Imported) {
    let rebuilt = regenerate_from(root, &imp.tarsplit).unwrap_or_else(|e| panic!("the layer cannot be exported: {e}"));
    assert!(rebuilt == tar, "the rebuilt stream differs from the layer ({} vs {} bytes)", rebuilt.len(), tar.len());
    // A parent created implicitly may be named by a later entry (one record: the entry's).
    let mut objects = std::collections::HashSet::new();
    let mut entries = std::collections::HashSet::new();
    let mut markers = std::collections::HashSet::new();
    for e in &imp.events {
        match e {
            Event::Entry(p) => {
                assert!(entries.insert(p.clone()), "two entry records for {p}");
                objects.insert(p.clone());
            }
            Event::Implicit(p) => assert!(objects.insert(p.clone()), "{p} created implicitly after an entry"),
            Event::Whiteout(p) | Event::Opaque(p) => assert!(markers.insert(p.clone()), "two markers for {p}"),
            Event::Skipped(_) => {}
        }
    }
    let at = |p: &str| if p == "." { root.to_path_buf() } else { root.join(p) };
    for e in &imp.events {
        match e {
            Event::Whiteout(p) => {
                assert!(!objects.contains(p), "{p}: a whiteout record and an object record");
                let md = std::fs::symlink_metadata(at(p)).unwrap_or_else(|e| panic!("whiteout {p}: {e}"));
                use std::os::unix::fs::FileTypeExt;
                assert!(md.file_type().is_char_device() && md.rdev() == 0, "whiteout {p} is not a 0/0 char device");
            }
            Event::Opaque(p) => {
                let v = xattr::get(at(p), "trusted.overlay.opaque").ok().flatten();
                assert_eq!(v.as_deref(), Some(&b"y"[..]), "opaque {p} has no trusted.overlay.opaque=y");
            }
            Event::Implicit(p) => assert!(std::fs::symlink_metadata(at(p)).unwrap().is_dir(), "implicit {p}"),
            Event::Entry(_) | Event::Skipped(_) => {}
        }
    }
    for entry in &imp.entries {
        let p = entry.path.to_string();
        let md = std::fs::symlink_metadata(at(&p)).unwrap_or_else(|e| panic!("entry {p}: {e}"));
        use strata_types::EntryKind;
        let want = if entry.kind == EntryKind::Hardlink { EntryKind::File } else { entry.kind };
        assert_eq!(EntryKind::from_mode(md.mode()), Some(want), "{p}: the record says {:?}", entry.kind);
        if entry.kind == EntryKind::Hardlink {
            continue;
        }
        if entry.kind != EntryKind::Dir && entry.kind != EntryKind::Symlink {
            assert_eq!(md.mode() & 0o7777, entry.mode, "{p}: mode");
        }
        if nix::unistd::geteuid().is_root() {
            assert_eq!((md.uid(), md.gid()), (entry.uid, entry.gid), "{p}: owner");
        }
        for (k, v) in &entry.xattrs {
            let got = xattr::get(at(&p), k).ok().flatten();
            assert_eq!(got.as_deref(), Some(&v[..]), "{p}: xattr {k} of the record is not on disk");
        }
    }
}
