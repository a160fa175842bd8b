//! A tar writer driven by fuzzer bytes.
//!
//! Raw mutation of tars mostly produces checksum errors; this writer turns any input into a
//! well-formed archive (or, when the input asks, a slightly broken one) whose names, link
//! targets, types and extension headers come from small vocabularies that matter to layer
//! extraction: whiteouts, opaque markers, `..`, symlinks that point at the sandbox's
//! sentinel, hardlinks, devices, overlay xattrs. File contents follow [`crate::content`].

use crate::checksum::set_checksum;
use crate::content::content;
use crate::input::Bytes;

/// Name components; `..`, `.`, empty and whiteout names on purpose.
const COMPONENTS: &[&[u8]] = &[
    b"a",
    b"b",
    b"c",
    b"dir",
    b"f",
    b"lnk",
    b"up",
    b"abs",
    b".wh.a",
    b".wh.b",
    b".wh.lnk",
    b".wh.dir",
    b".wh..wh..opq",
    b".wh..wh.plnk",
    b".wh.",
    b".wh..",
    b".",
    b"..",
    b"",
    b"sentinel",
    b"x y",
    b"\xc3\xa9",
    b"\xff\xfe",
    b"etc",
    b"passwd",
];

/// Symlink and hardlink targets beyond generated names.
const TARGETS: &[&[u8]] = &[b"../sentinel", b"../sentinel/file", b"../../sentinel", b"/", b"/etc/passwd", b"..", b"."];

const XATTRS: &[&str] = &[
    "user.a",
    "user.b",
    "security.capability",
    "trusted.overlay.opaque",
    "user.overlay.redirect",
    "trusted.x",
    "security.selinux",
];

/// How an entry spells its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameStyle {
    /// The header's name field (names over 100 bytes fall back to PAX).
    Header,
    /// A PAX `path` record (`linkpath` for the link).
    Pax,
    /// GNU `L` / `K` long name headers.
    Gnu,
}

#[derive(Debug, Clone)]
pub struct EntrySpec {
    pub typeflag: u8,
    pub name: Vec<u8>,
    pub link: Vec<u8>,
    pub size: u64,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub dev: (u32, u32),
    pub xattrs: Vec<(String, Vec<u8>)>,
    pub style: NameStyle,
}

impl EntrySpec {
    pub fn new(typeflag: u8, name: &[u8]) -> Self {
        EntrySpec {
            typeflag,
            name: name.to_vec(),
            link: Vec::new(),
            size: 0,
            mode: if typeflag == b'5' { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
            dev: (0, 0),
            xattrs: Vec::new(),
            style: NameStyle::Header,
        }
    }

    pub fn file(name: &[u8], size: u64) -> Self {
        EntrySpec { size, ..Self::new(b'0', name) }
    }

    pub fn link(typeflag: u8, name: &[u8], target: &[u8]) -> Self {
        EntrySpec { link: target.to_vec(), ..Self::new(typeflag, name) }
    }
}

/// An archive: entries, then the end-of-archive marker (unless `truncate`), then `trailer`.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub entries: Vec<EntrySpec>,
    /// Drop this many bytes from the end of the archive (before the trailer).
    pub truncate: u16,
    pub trailer: Vec<u8>,
}

fn name(b: &mut Bytes<'_>) -> Vec<u8> {
    if b.u8().is_multiple_of(16) {
        return b.slice(160).to_vec();
    }
    let mut out = Vec::new();
    match b.u8() % 8 {
        0 => out.extend_from_slice(b"./"),
        1 => out.push(b'/'),
        _ => {}
    }
    let n = 1 + b.u8() % 3;
    for i in 0..n {
        if i > 0 {
            out.push(b'/');
        }
        let component: &[u8] = b.pick::<&[u8]>(COMPONENTS);
        out.extend_from_slice(component);
    }
    if b.u8().is_multiple_of(8) {
        out.push(b'/');
    }
    out
}

impl Spec {
    /// Decodes up to 24 entries from the input.
    pub fn from_bytes(b: &mut Bytes<'_>) -> Spec {
        let mut spec = Spec::default();
        let n = b.u8() % 25;
        for _ in 0..n {
            if b.is_empty() {
                break;
            }
            let typeflag = *b.pick(&[b'0', b'0', b'0', b'5', b'5', b'2', b'1', b'3', b'4', b'6', b'7', 0, b'S', b'V']);
            let mut e = EntrySpec::new(typeflag, &name(b));
            match typeflag {
                b'0' | b'7' | 0 => e.size = u64::from(b.u16() % 3000),
                b'1' | b'2' => {
                    e.link = if b.u8().is_multiple_of(4) { b.pick(TARGETS).to_vec() } else { name(b) };
                }
                b'3' | b'4' => e.dev = (u32::from(b.u8() % 3), u32::from(b.u8() % 3)),
                _ => {}
            }
            let flags = b.u8();
            if flags & 1 != 0 {
                e.mode = u32::from(b.u16()) & 0o7777;
            }
            if flags & 2 != 0 {
                e.uid = u64::from(b.u32());
                e.gid = u64::from(b.u16());
            }
            if flags & 4 != 0 {
                for _ in 0..1 + b.u8() % 2 {
                    e.xattrs.push(((*b.pick(XATTRS)).to_owned(), b.slice(8).to_vec()));
                }
            }
            if flags & 8 != 0 {
                e.size = u64::from(b.u8()); // data where there should be none, or a small file
            }
            e.style = *b.pick(&[NameStyle::Header, NameStyle::Header, NameStyle::Pax, NameStyle::Gnu]);
            spec.entries.push(e);
        }
        if b.u8().is_multiple_of(16) {
            spec.truncate = b.u16() % 1100;
        }
        if b.u8().is_multiple_of(16) {
            spec.trailer = b.slice(64).to_vec();
        }
        spec
    }

    /// The name each entry's header spells (what tar-split records).
    pub fn raw_name(e: &EntrySpec) -> &[u8] {
        &e.name
    }

    pub fn to_tar(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for e in &self.entries {
            write_entry(&mut out, e);
        }
        out.extend_from_slice(&[0; 1024]);
        out.truncate(out.len().saturating_sub(self.truncate as usize));
        out.extend_from_slice(&self.trailer);
        out
    }
}

fn octal(field: &mut [u8], v: u64) {
    let s = format!("{:0width$o}\0", v, width = field.len() - 1);
    if s.len() == field.len() {
        field.copy_from_slice(s.as_bytes());
    } else {
        // base-256, as GNU tar writes numbers that do not fit
        field.fill(0);
        field[0] = 0x80;
        let n = field.len();
        field[n - 8..].copy_from_slice(&v.to_be_bytes());
    }
}

fn header(typeflag: u8, name: &[u8], link: &[u8], size: u64, gnu: bool) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    let l = link.len().min(100);
    h[157..157 + l].copy_from_slice(&link[..l]);
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 1_700_000_000);
    h[156] = typeflag;
    if gnu {
        h[257..265].copy_from_slice(b"ustar  \0");
    } else {
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
    }
    h
}

fn pad(out: &mut Vec<u8>) {
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len.to_string().len() + body != len {
        len = len.to_string().len() + body;
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn extension(out: &mut Vec<u8>, typeflag: u8, data: &[u8], gnu: bool) {
    let mut h = header(typeflag, b"././@LongLink", b"", data.len() as u64, gnu);
    set_checksum(&mut h);
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    pad(out);
}

fn write_entry(out: &mut Vec<u8>, e: &EntrySpec) {
    let gnu = e.style == NameStyle::Gnu;
    let long = e.name.len() > 100 || e.link.len() > 100;
    let mut pax = Vec::new();
    if e.style == NameStyle::Pax || (long && !gnu) {
        pax_record(&mut pax, b"path", &e.name);
        if !e.link.is_empty() {
            pax_record(&mut pax, b"linkpath", &e.link);
        }
    }
    for (k, v) in &e.xattrs {
        pax_record(&mut pax, format!("SCHILY.xattr.{k}").as_bytes(), v);
    }
    let big_ids = e.uid > 0o7777777 || e.gid > 0o7777777;
    if big_ids {
        pax_record(&mut pax, b"uid", e.uid.to_string().as_bytes());
        pax_record(&mut pax, b"gid", e.gid.to_string().as_bytes());
    }
    if !pax.is_empty() {
        extension(out, b'x', &pax, false);
    }
    if gnu {
        extension(out, b'L', &[&e.name[..], b"\0"].concat(), true);
        if !e.link.is_empty() {
            extension(out, b'K', &[&e.link[..], b"\0"].concat(), true);
        }
    }
    let mut h = header(e.typeflag, &e.name, &e.link, e.size, gnu);
    octal(&mut h[100..108], u64::from(e.mode));
    if !big_ids {
        octal(&mut h[108..116], e.uid);
        octal(&mut h[116..124], e.gid);
    }
    octal(&mut h[136..148], e.mtime);
    octal(&mut h[329..337], u64::from(e.dev.0));
    octal(&mut h[337..345], u64::from(e.dev.1));
    set_checksum(&mut h);
    out.extend_from_slice(&h);
    out.extend_from_slice(&content(Spec::raw_name(e), e.size));
    pad(out);
}
