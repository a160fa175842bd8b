//! Assembly of a file from pieces: ranges of files in other layers (verified, then reflinked
//! where the block phase allows, copied otherwise), bytes at hand, holes, and bytes still
//! to be fetched.
//!
//! Sources are opened one run at a time and closed right after, so an assembly holds at most
//! one source descriptor however many layers and files it draws from. A source removed
//! before it is opened is reported missing; one removed after is still read through its open
//! descriptor. A source whose bytes do not have the expected digest is never used: the piece
//! falls back to bytes at hand or is reported missing for the caller to fetch.
//!
//! What is stored is what was verified. Store layer files ([`SourceFile::Path`]) do not
//! change, so they are verified and then cloned. A file the caller opened from a tree it does
//! not control ([`SourceFile::Open`], a running container's upperdir) may change between the
//! two, so a clone from it is checked after it is made: the clone is private, so once it
//! matches it can no longer change.

use std::fs::File;
use std::io::{self, Read};
use std::num::NonZeroU64;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Arc;

use strata_types::{Blake3Digest, Sha256Digest};

/// Block size assumed for clone alignment (XFS and btrfs default; the kernel rejects
/// misaligned clones with EINVAL, which falls back to copying, so a larger block size only
/// costs sharing, never correctness).
pub const BLOCK: u64 = 4096;

/// Longest source run read into memory at once.
const WINDOW: u64 = 8 << 20;

/// The digest a reused range must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Blake3(Blake3Digest),
    /// For chunks and files known by a foreign (zstd:chunked TOC) digest.
    Sha256(Sha256Digest),
}

impl Expect {
    fn matches(&self, data: &[u8]) -> bool {
        match self {
            Expect::Blake3(d) => Blake3Digest::of(data) == *d,
            Expect::Sha256(d) => Sha256Digest::of(data) == *d,
        }
    }
}

/// The file a local range is in.
#[derive(Clone, Debug)]
pub enum SourceFile {
    /// A file of a store layer: opened (without following a symlink in its last component)
    /// when the run that needs it is assembled. It does not change.
    Path(PathBuf),
    /// A file the caller opened (beneath a tree it does not control). It may change while
    /// it is read: clones from it are checked after they are made.
    Open(Arc<File>),
}

impl SourceFile {
    fn may_change(&self) -> bool {
        matches!(self, SourceFile::Open(_))
    }

    /// The open file; `None` when a path source is gone (or is no longer a plain file).
    fn open(&self) -> io::Result<Option<FileRef<'_>>> {
        match self {
            SourceFile::Open(f) => Ok(Some(FileRef::Borrowed(f))),
            SourceFile::Path(p) => match File::options().read(true).custom_flags(libc::O_NOFOLLOW).open(p) {
                Ok(f) => Ok(Some(FileRef::Owned(f))),
                Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ELOOP) => Ok(None),
                Err(e) => Err(e),
            },
        }
    }
}

impl PartialEq for SourceFile {
    fn eq(&self, other: &SourceFile) -> bool {
        match (self, other) {
            (SourceFile::Path(a), SourceFile::Path(b)) => a == b,
            (SourceFile::Open(a), SourceFile::Open(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for SourceFile {}

impl From<PathBuf> for SourceFile {
    fn from(p: PathBuf) -> SourceFile {
        SourceFile::Path(p)
    }
}

/// An opened source: ours to close, or the caller's.
enum FileRef<'a> {
    Owned(File),
    Borrowed(&'a File),
}

impl std::ops::Deref for FileRef<'_> {
    type Target = File;
    fn deref(&self) -> &File {
        match self {
            FileRef::Owned(f) => f,
            FileRef::Borrowed(f) => f,
        }
    }
}

/// A range of a file in a local layer believed to hold the wanted bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalRange {
    pub source: SourceFile,
    pub offset: u64,
    pub len: u64,
    pub expect: Expect,
}

/// What to use when no local range is given or the local range fails verification.
#[derive(Clone, Copy, Debug)]
pub enum Fill<'a> {
    /// The bytes are at hand (from a tar stream or a fetch).
    Bytes(&'a [u8]),
    /// All zeros: left as a hole.
    Zeros,
    /// Nothing at hand: reported in [`Assembled::missing`] for the caller to fetch.
    Missing,
}

/// One consecutive piece of the destination file.
#[derive(Clone, Debug)]
pub struct Piece<'a> {
    pub len: u64,
    pub local: Option<LocalRange>,
    pub fill: Fill<'a>,
}

/// How a file's bytes got there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Every data byte shares blocks with a local layer.
    Reflink,
    /// Some bytes share blocks, the rest were copied or written.
    PartialReflink,
    /// Local bytes were copied (no sharing), maybe with some written bytes.
    Copy,
    /// Only bytes at hand were written (or the file is empty / all holes).
    Written,
}

/// The result of assembling one file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assembled {
    /// Bytes taken from local layers by reflink (shared blocks).
    pub reflinked: u64,
    /// Bytes taken from local layers by copying.
    pub copied: u64,
    /// Bytes written from what the caller had at hand.
    pub written: u64,
    /// Bytes left as holes.
    pub holes: u64,
    /// Pieces with no usable bytes: (piece index, destination offset).
    pub missing: Vec<(usize, u64)>,
    /// Local ranges that were unusable (gone or wrong digest).
    pub rejected_local: usize,
}

impl Assembled {
    pub fn method(&self) -> Method {
        if self.reflinked > 0 && self.copied == 0 && self.written == 0 {
            Method::Reflink
        } else if self.reflinked > 0 {
            Method::PartialReflink
        } else if self.copied > 0 {
            Method::Copy
        } else {
            Method::Written
        }
    }
    /// Bytes reused from local layers (reflinked or copied).
    pub fn reused(&self) -> u64 {
        self.reflinked + self.copied
    }
}

/// Whether clones into the destination filesystem work; learned from the first attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CloneSupport {
    Unknown,
    Yes,
    No,
}

/// Assembles files; remembers whether the filesystem supports reflinks.
#[derive(Debug)]
pub struct Assembler {
    clones: CloneSupport,
    allow_reflink: bool,
}

impl Default for Assembler {
    fn default() -> Self {
        Self::new()
    }
}

fn is_unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EXDEV | libc::ENOTTY | libc::ENOSYS | libc::EBADF))
}

impl Assembler {
    pub fn new() -> Self {
        Assembler { clones: CloneSupport::Unknown, allow_reflink: true }
    }

    /// An assembler that never reflinks (for measuring, and for `--no-reflink`).
    pub fn without_reflinks() -> Self {
        Assembler { clones: CloneSupport::No, allow_reflink: false }
    }

    /// True once a clone has succeeded.
    pub fn reflinks_work(&self) -> bool {
        self.clones == CloneSupport::Yes
    }

    /// False once a clone failed with "not supported" (or reflinks are disabled): local
    /// ranges are then only worth reading when the bytes are not at hand.
    pub fn may_reflink(&self) -> bool {
        self.allow_reflink && self.clones != CloneSupport::No
    }

    fn try_clone(&mut self, src: &File, src_off: u64, dst: &File, dst_off: u64, len: u64) -> bool {
        if self.clones == CloneSupport::No || !self.allow_reflink || len == 0 {
            return false;
        }
        let Some(nz) = NonZeroU64::new(len) else { return false };
        let r = reflink_copy::ReflinkBlockBuilder::new(src, dst, nz)
            .from_offset(src_off)
            .to_offset(dst_off)
            .reflink_block();
        match r {
            Ok(()) => {
                self.clones = CloneSupport::Yes;
                true
            }
            Err(e) if is_unsupported(&e) => {
                self.clones = CloneSupport::No;
                false
            }
            Err(_) => false, // EINVAL: misaligned or refused for this range only.
        }
    }

    /// Writes `pieces` into `dst` (a new, empty file) back to back. The file's size is set to
    /// the total length at the end, so trailing holes and missing pieces are covered.
    pub fn assemble(&mut self, dst: &File, pieces: &[Piece<'_>]) -> io::Result<Assembled> {
        let mut out = Assembled::default();
        let total: u64 = pieces.iter().map(|p| p.len).sum();
        let mut i = 0;
        let mut dst_off = 0u64;
        while i < pieces.len() {
            if pieces[i].local.is_none() {
                self.fill(dst, dst_off, i, &pieces[i], &mut out)?;
                dst_off += pieces[i].len;
                i += 1;
                continue;
            }
            // A run: consecutive local pieces, same source, contiguous, within one window.
            let first = pieces[i].local.as_ref().expect("checked");
            let mut j = i + 1;
            let mut run_len = first.len;
            while j < pieces.len() {
                match &pieces[j].local {
                    Some(l)
                        if l.source == first.source
                            && l.offset == first.offset + run_len
                            && run_len + l.len <= WINDOW =>
                    {
                        run_len += l.len;
                        j += 1;
                    }
                    _ => break,
                }
            }
            let ends_file = dst_off + run_len == total;
            self.local_run(dst, dst_off, i, &pieces[i..j], ends_file, &mut out)?;
            dst_off += run_len;
            i = j;
        }
        // Only trailing holes or missing pieces leave the file short. Extending is not free:
        // XFS flushes a file's dirty pages on a size change (about 1 ms per file).
        if dst.metadata()?.len() < total {
            dst.set_len(total)?;
        }
        Ok(out)
    }

    fn fill(&mut self, dst: &File, dst_off: u64, idx: usize, piece: &Piece<'_>, out: &mut Assembled) -> io::Result<()> {
        match piece.fill {
            Fill::Bytes(b) => {
                if b.len() as u64 != piece.len {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("piece {idx} has {} bytes, expected {}", b.len(), piece.len),
                    ));
                }
                dst.write_all_at(b, dst_off)?;
                out.written += piece.len;
            }
            Fill::Zeros => out.holes += piece.len,
            Fill::Missing => out.missing.push((idx, dst_off)),
        }
        Ok(())
    }

    /// One run of pieces from the same source file: read and verify them, then clone the
    /// block-aligned part of every verified stretch whose phase matches, write the rest.
    fn local_run(
        &mut self,
        dst: &File,
        dst_start: u64,
        first_idx: usize,
        run: &[Piece<'_>],
        ends_file: bool,
        out: &mut Assembled,
    ) -> io::Result<()> {
        let first = run[0].local.as_ref().expect("run of local pieces");
        let src_start = first.offset;
        let run_len: u64 = run.iter().map(|p| p.len).sum();
        let may_change = first.source.may_change();
        let (src, src_size) = match first.source.open()? {
            Some(f) => match f.metadata() {
                Ok(m) if m.is_file() => (Some(f), m.len()),
                _ => (None, 0),
            },
            None => (None, 0),
        };
        let mut buf = vec![0u8; run_len as usize];
        let readable = match &src {
            Some(f) if src_start + run_len <= src_size => read_exact_at(f, &mut buf, src_start).is_ok(),
            _ => false,
        };
        // Verify each piece; collect maximal stretches of verified pieces.
        let mut ok = Vec::with_capacity(run.len());
        let mut off = 0usize;
        for p in run {
            let l = p.local.as_ref().expect("local");
            let good = readable && l.expect.matches(&buf[off..off + p.len as usize]);
            ok.push(good);
            off += p.len as usize;
        }
        let mut k = 0;
        let mut rel = 0u64; // offset of piece k within the run
        while k < run.len() {
            if !ok[k] {
                out.rejected_local += 1;
                self.fill(dst, dst_start + rel, first_idx + k, &run[k], out)?;
                rel += run[k].len;
                k += 1;
                continue;
            }
            let mut m = k;
            let mut len = 0u64;
            while m < run.len() && ok[m] {
                len += run[m].len;
                m += 1;
            }
            let reaches_src_eof = src_start + rel + len == src_size;
            let data = &buf[rel as usize..(rel + len) as usize];
            let src = src.as_ref().expect("verified pieces have a source");
            self.place_verified(
                src,
                src_start + rel,
                dst,
                dst_start + rel,
                data,
                ends_file && m == run.len() && reaches_src_eof,
                may_change,
                out,
            )?;
            rel += len;
            k = m;
        }
        Ok(())
    }

    /// Places verified bytes `data` (= `src[src_off..]`) at `dst_off`: the block-aligned
    /// interior by clone when source and destination share the block phase, the rest by write.
    /// When the source `may_change`, the clone is read back and compared with `data`; a
    /// clone that differs (the source changed since it was verified) is overwritten with
    /// `data`.
    #[allow(clippy::too_many_arguments)]
    fn place_verified(
        &mut self,
        src: &File,
        src_off: u64,
        dst: &File,
        dst_off: u64,
        data: &[u8],
        tail_at_eof: bool,
        may_change: bool,
        out: &mut Assembled,
    ) -> io::Result<()> {
        let len = data.len() as u64;
        let same_phase = src_off % BLOCK == dst_off % BLOCK;
        if same_phase && self.clones != CloneSupport::No && self.allow_reflink {
            let head = (BLOCK - dst_off % BLOCK) % BLOCK;
            if head < len {
                let body_start = head;
                let aligned_end = body_start + (len - body_start) / BLOCK * BLOCK;
                // At both EOFs the unaligned tail may be cloned too.
                let mut cloned_end = aligned_end;
                if tail_at_eof
                    && aligned_end < len
                    && self.try_clone(src, src_off + body_start, dst, dst_off + body_start, len - body_start)
                {
                    cloned_end = len;
                } else if aligned_end > body_start
                    && !self.try_clone(src, src_off + body_start, dst, dst_off + body_start, aligned_end - body_start)
                {
                    cloned_end = body_start; // clone refused: write everything
                }
                if cloned_end > body_start && may_change {
                    let cloned = &data[body_start as usize..cloned_end as usize];
                    let mut back = vec![0u8; cloned.len()];
                    let same = dst.read_exact_at(&mut back, dst_off + body_start).is_ok() && back == cloned;
                    if !same {
                        // Changed after verification: the verified bytes, not the clone.
                        dst.write_all_at(data, dst_off)?;
                        out.copied += len;
                        return Ok(());
                    }
                }
                if cloned_end > body_start {
                    if body_start > 0 {
                        dst.write_all_at(&data[..body_start as usize], dst_off)?;
                    }
                    if cloned_end < len {
                        dst.write_all_at(&data[cloned_end as usize..], dst_off + cloned_end)?;
                    }
                    out.reflinked += cloned_end - body_start;
                    out.copied += len - (cloned_end - body_start);
                    return Ok(());
                }
            }
        }
        dst.write_all_at(data, dst_off)?;
        out.copied += len;
        Ok(())
    }

    /// Reuses a whole local file for `dst` (new and empty): verifies the source, then
    /// clones it (FICLONE) or copies it. A source that may change is cloned first and the
    /// clone verified instead. Returns `None` when the source is gone or does not have the
    /// expected digest (and leaves `dst` empty).
    pub fn reuse_whole(&mut self, dst: &File, src: &LocalRange) -> io::Result<Option<Assembled>> {
        let Some(f) = src.source.open()? else { return Ok(None) };
        let meta = f.metadata()?;
        if !meta.is_file() || meta.len() != src.len || src.offset != 0 {
            return Ok(None);
        }
        let can_clone = self.clones != CloneSupport::No && self.allow_reflink;
        if !can_clone {
            return self.copy_verified(&f, dst, src);
        }
        if src.source.may_change() {
            return self.clone_then_verify(&f, dst, src);
        }
        // A store layer's file: hash it, then clone it.
        let mut verifier = Verifier::new(src.expect);
        // Sized to the file: most reused files are small, and zeroing 1 MiB per file showed up
        // as 9% of a pull's CPU.
        let mut buf = vec![0u8; (src.len as usize).clamp(1, 1 << 20)];
        let mut pos = 0u64;
        let mut reader = (&*f).take(src.len);
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            verifier.update(&buf[..n]);
            pos += n as u64;
        }
        if pos != src.len || !verifier.matches() {
            return Ok(None);
        }
        match reflink_copy::reflink_file(&f, dst) {
            Ok(()) => {
                self.clones = CloneSupport::Yes;
                Ok(Some(Assembled { reflinked: src.len, ..Default::default() }))
            }
            Err(e) => {
                if is_unsupported(&e) {
                    self.clones = CloneSupport::No;
                }
                copy_all(&f, dst, src.len)?;
                Ok(Some(Assembled { copied: src.len, ..Default::default() }))
            }
        }
    }
}

impl Assembler {
    /// FICLONE of a source that may change, then the clone (private, so stable) hashed.
    fn clone_then_verify(&mut self, f: &File, dst: &File, src: &LocalRange) -> io::Result<Option<Assembled>> {
        match reflink_copy::reflink_file(f, dst) {
            Ok(()) => self.clones = CloneSupport::Yes,
            Err(e) => {
                if is_unsupported(&e) {
                    self.clones = CloneSupport::No;
                }
                // Copying verifies as it goes: what is written is what was hashed.
                return self.copy_verified(f, dst, src);
            }
        }
        let mut verifier = Verifier::new(src.expect);
        let mut buf = vec![0u8; (src.len as usize).clamp(1, 1 << 20)];
        let mut pos = 0u64;
        while pos < src.len {
            let n = dst.read_at(&mut buf, pos)?;
            if n == 0 {
                break;
            }
            verifier.update(&buf[..n]);
            pos += n as u64;
        }
        if pos != src.len || dst.metadata()?.len() != src.len || !verifier.matches() {
            dst.set_len(0)?;
            return Ok(None);
        }
        Ok(Some(Assembled { reflinked: src.len, ..Default::default() }))
    }

    /// Reads, hashes and writes in one pass; `None` (dst emptied) when the digest differs.
    fn copy_verified(&mut self, f: &File, dst: &File, src: &LocalRange) -> io::Result<Option<Assembled>> {
        let mut verifier = Verifier::new(src.expect);
        let mut buf = vec![0u8; (src.len as usize).clamp(1, 1 << 20)];
        let mut pos = 0u64;
        let mut reader = f.take(src.len);
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            verifier.update(&buf[..n]);
            dst.write_all_at(&buf[..n], pos)?;
            pos += n as u64;
        }
        if pos != src.len || !verifier.matches() {
            dst.set_len(0)?;
            return Ok(None);
        }
        Ok(Some(Assembled { copied: src.len, ..Default::default() }))
    }
}

fn read_exact_at(f: &File, buf: &mut [u8], off: u64) -> io::Result<()> {
    f.read_exact_at(buf, off)
}

fn copy_all(src: &File, dst: &File, len: u64) -> io::Result<()> {
    let mut buf = vec![0u8; (1 << 20).min(len as usize).max(1)];
    let mut pos = 0u64;
    while pos < len {
        let n = src.read_at(&mut buf, pos)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "source shrank while copying"));
        }
        dst.write_all_at(&buf[..n], pos)?;
        pos += n as u64;
    }
    Ok(())
}

enum Verifier {
    Blake3(Box<blake3::Hasher>, Blake3Digest),
    Sha256(strata_types::Sha256Hasher, Sha256Digest),
}

impl Verifier {
    fn new(e: Expect) -> Self {
        match e {
            Expect::Blake3(d) => Verifier::Blake3(Box::new(blake3::Hasher::new()), d),
            Expect::Sha256(d) => Verifier::Sha256(strata_types::Sha256Hasher::new(), d),
        }
    }
    fn update(&mut self, b: &[u8]) {
        match self {
            Verifier::Blake3(h, _) => {
                h.update(b);
            }
            Verifier::Sha256(h, _) => h.update(b),
        }
    }
    fn matches(self) -> bool {
        match self {
            Verifier::Blake3(h, d) => Blake3Digest::from_bytes(*h.finalize().as_bytes()) == d,
            Verifier::Sha256(h, d) => h.finalize() == d,
        }
    }
}
