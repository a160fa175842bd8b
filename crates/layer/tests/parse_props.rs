//! Property tests of the tar parser: arbitrary and mutated bytes never panic; tars written by
//! the `tar` crate from random entries (ustar prefix, GNU long names and links, base-256
//! numbers, PAX xattrs and nanosecond mtimes) parse back to the same entries, and the tap
//! receives exactly the input.

use std::io::{self, Read};

use proptest::prelude::*;
use strata_layer::parse::{HeaderTracker, TarReader};
use strata_layer::{TarOut, Tee};
use strata_types::{Entry, EntryKind, RelPath, Timestamp};

#[derive(Default)]
struct Collect {
    bytes: Vec<u8>,
    names: Vec<Vec<u8>>,
}

impl TarOut for Collect {
    fn segment(&mut self, b: &[u8]) -> io::Result<()> {
        self.bytes.extend_from_slice(b);
        Ok(())
    }
    fn file_begin(&mut self, name: &[u8], _: u64) -> io::Result<()> {
        self.names.push(name.to_vec());
        Ok(())
    }
    fn file_data(&mut self, b: &[u8]) -> io::Result<()> {
        self.bytes.extend_from_slice(b);
        Ok(())
    }
    fn file_end(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Debug, Clone)]
enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(String),
    /// A hardlink to the n-th earlier regular file (modulo their count).
    Hardlink(usize),
    Fifo,
    Char(u32, u32),
    Block(u32, u32),
}

#[derive(Debug, Clone)]
struct Gen {
    name: String,
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
    nanos: Option<u32>,
    xattrs: Vec<(String, Vec<u8>)>,
    gnu: bool,
}

fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z0-9_-][a-z0-9._-]{0,12}",
        1 => "[a-z]{60,99}",
    ]
    .prop_filter("not . or ..", |c| c != "." && c != "..")
}

fn gen_entry() -> impl Strategy<Value = Gen> {
    let kind = prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..1500).prop_map(Kind::File),
        2 => Just(Kind::Dir),
        1 => (any::<bool>(), proptest::collection::vec(prop_oneof!["[a-z]{1,8}", Just("..".to_owned())], 1..20))
            .prop_map(|(abs, c)| Kind::Symlink(format!("{}{}", if abs { "/" } else { "" }, c.join("/")))),
        1 => any::<usize>().prop_map(Kind::Hardlink),
        1 => Just(Kind::Fifo),
        1 => (0u32..4096, 0u32..1_000_000).prop_map(|(a, b)| Kind::Char(a, b)),
        1 => (0u32..4096, 0u32..1_000_000).prop_map(|(a, b)| Kind::Block(a, b)),
    ];
    let xattrs = proptest::collection::vec(("[a-z]{1,10}", proptest::collection::vec(any::<u8>(), 0..40)), 0..3);
    (
        proptest::collection::vec(component(), 1..5),
        kind,
        0u32..0o10000,
        // u32::MAX, (uid_t)-1, is refused by design (no file can have it): the largest id is one less.
        prop_oneof![0u32..3000, Just(u32::MAX - 1), 2_097_152u32..10_000_000],
        0..u32::MAX,
        prop_oneof![0u64..8_589_934_591, 8_589_934_592u64..1 << 40],
        proptest::option::of(0u32..1_000_000_000),
        xattrs,
        any::<bool>(),
    )
        .prop_map(|(comps, kind, mode, uid, gid, mtime, nanos, xattrs, gnu)| Gen {
            name: comps.join("/"),
            kind,
            mode,
            uid,
            gid,
            mtime,
            nanos,
            xattrs: xattrs.into_iter().map(|(k, v)| (format!("user.{k}"), v)).collect(),
            gnu,
        })
}

/// Writes the entries with the `tar` crate; returns the tar and the entries expected back.
fn build(gens: &[Gen]) -> (Vec<u8>, Parsed) {
    let mut b = tar::Builder::new(Vec::new());
    let mut expected = Vec::new();
    let mut files: Vec<String> = Vec::new();
    for g in gens {
        let mut pax: Vec<(String, Vec<u8>)> =
            g.xattrs.iter().map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.clone())).collect();
        if let Some(n) = g.nanos {
            pax.push(("mtime".into(), format!("{}.{n:09}", g.mtime).into_bytes()));
        }
        if !pax.is_empty() {
            b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice()))).unwrap();
        }
        let mut h = if g.gnu { tar::Header::new_gnu() } else { tar::Header::new_ustar() };
        h.set_mode(g.mode);
        h.set_uid(g.uid.into());
        h.set_gid(g.gid.into());
        h.set_mtime(g.mtime);
        let mut e = Entry::new(RelPath::new(&g.name).unwrap(), EntryKind::File);
        e.mode = g.mode;
        e.uid = g.uid;
        e.gid = g.gid;
        e.mtime = Timestamp::new(g.mtime as i64, g.nanos.unwrap_or(0));
        e.xattrs = g.xattrs.iter().cloned().collect();
        let mut data = Vec::new();
        let kind = match &g.kind {
            Kind::Hardlink(_) if files.is_empty() => &Kind::Fifo,
            k => k,
        };
        let ok = match kind {
            Kind::File(d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(d.len() as u64);
                e.size = d.len() as u64;
                data = d.clone();
                files.push(g.name.clone());
                b.append_data(&mut h, &g.name, &d[..]).is_ok()
            }
            Kind::Symlink(_) | Kind::Hardlink(_) => {
                let (ty, ek, target) = match kind {
                    Kind::Symlink(t) => (tar::EntryType::Symlink, EntryKind::Symlink, t.clone()),
                    Kind::Hardlink(i) => (tar::EntryType::Link, EntryKind::Hardlink, files[i % files.len()].clone()),
                    _ => unreachable!(),
                };
                e.kind = ek;
                e.link_target = Some(target.clone().into_bytes());
                h.set_entry_type(ty);
                h.set_size(0);
                b.append_link(&mut h, &g.name, &target).is_ok()
            }
            other => {
                let (ty, ek) = match other {
                    Kind::Dir => (tar::EntryType::Directory, EntryKind::Dir),
                    Kind::Fifo => (tar::EntryType::Fifo, EntryKind::Fifo),
                    Kind::Char(..) => (tar::EntryType::Char, EntryKind::CharDevice),
                    _ => (tar::EntryType::Block, EntryKind::BlockDevice),
                };
                if let Kind::Char(ma, mi) | Kind::Block(ma, mi) = other {
                    h.set_device_major(*ma).unwrap();
                    h.set_device_minor(*mi).unwrap();
                    (e.dev_major, e.dev_minor) = (*ma, *mi);
                }
                e.kind = ek;
                h.set_entry_type(ty);
                h.set_size(0);
                b.append_data(&mut h, &g.name, io::empty()).is_ok()
            }
        };
        assert!(ok, "the tar crate refused {g:?}");
        expected.push((e, data));
    }
    (b.into_inner().unwrap(), expected)
}

/// Entries with their payloads.
type Parsed = Vec<(Entry, Vec<u8>)>;

/// Parses `tar` completely; returns the entries with their payloads and the taps.
fn parse_all(tar: &[u8]) -> Result<(Parsed, Collect, HeaderTracker), String> {
    let mut reader = TarReader::with_tap(tar, Tee(Collect::default(), HeaderTracker::default()));
    let mut out = Vec::new();
    while let Some(h) = reader.next_header().map_err(|e| e.to_string())? {
        let mut data = Vec::new();
        reader.payload().read_to_end(&mut data).map_err(|e| e.to_string())?;
        out.push((h.entry, data));
    }
    let Tee(collect, tracker) = reader.into_tap();
    Ok((out, collect, tracker))
}

proptest! {
    #[test]
    fn generated_tars_parse_back_exactly(gens in proptest::collection::vec(gen_entry(), 0..10)) {
        let (tar, expected) = build(&gens);
        let (entries, collect, tracker) = parse_all(&tar).unwrap();
        prop_assert_eq!(&entries, &expected);
        prop_assert!(collect.bytes == tar, "the tap got exactly the input");
        let names: Vec<Vec<u8>> = gens.iter().map(|g| g.name.clone().into_bytes()).collect();
        prop_assert_eq!(collect.names, names);
        prop_assert_eq!(tracker.entries(), gens.len() as u64);
        prop_assert!(tracker.finish().is_ok());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = parse_all(&bytes);
    }

    #[test]
    fn mutated_and_truncated_tars_never_panic(
        gens in proptest::collection::vec(gen_entry(), 1..5),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let (mut tar, _) = build(&gens);
        for (i, b) in flips {
            let i = i.index(tar.len());
            tar[i] = b;
        }
        let _ = parse_all(&tar);
        let _ = parse_all(&tar[..cut.index(tar.len())]);
    }
}
