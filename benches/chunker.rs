//! Chunker benchmarks (`cargo bench --bench chunker`; the XFS part needs root). Prints
//! markdown tables.
//!
//! 1. Chunk+hash throughput of `digest_paths` over the regular files of rootfs-b and of
//!    `digest_path` over a 1 GiB random file, on a rayon pool of 1 and of 2 threads, against
//!    `b3sum --num-threads 1` and `b3sum` over the same files. Page cache warm for all; every
//!    case runs `STRATA_BENCH_RUNS` times interleaved with the others (so background load
//!    hits all alike), median reported.
//! 2. Where the time goes, one thread, data in memory: FastCDC alone, BLAKE3 alone (one pass
//!    over the input, and per chunk), `digest_bytes`, and a fused one-pass variant.
//! 3. The debootstrap pair (a = bookworm minbase, b = a + python3): bytes of b found in a as
//!    whole files at the same path, as whole files anywhere, as FastCDC chunks, and what of
//!    that can share blocks (4 KiB phase rule); then for real on an XFS loop mount: a's files
//!    copied in, b assembled with `Assembler` (whole-file reuse, chunk pieces, bytes of b for
//!    the rest) vs b copied plainly: blocks allocated (statvfs after syncfs) and FIEMAP.
//! 4. FastCDC parameters 8/32/128, 16/64/256 (strata's), 32/128/512 KiB on the same pair.
//!
//!    Also chunked as whole streams: the layer tars of the pair (`STRATA_BENCH_TARS`, default
//!    `$STRATA_PEERS/tars`), where content shifts between a and b.
//!
//! Env: `STRATA_BENCH_TMP` scratch parent (default `/var/tmp`); `STRATA_BENCH_A`,
//! `STRATA_BENCH_B` the trees (default `$STRATA_PEERS/rootfs-{a,b}`, from `scripts/setup-peers.sh`); `STRATA_BENCH_RUNS`
//! (default 5); `STRATA_BENCH_BIG_MIB` size of the random file (default 1024).

use std::collections::HashMap;
use std::fs::File;
use std::hint::black_box;
use std::ops::Range;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use strata_chunker::assemble::BLOCK;
use strata_chunker::{Assembled, Assembler, Expect, Fill, HashOptions, LocalRange, Piece, cdc};
use strata_chunker::{FileDigests, digest_bytes, digest_path, digest_paths};
use strata_types::Blake3Digest;

const KIB: usize = 1024;

/// A tree's regular files (what strata chunks), in path order, contents in memory.
struct Tree {
    root: PathBuf,
    rel: Vec<PathBuf>,
    data: Vec<Vec<u8>>,
}

impl Tree {
    fn load(root: &Path) -> Tree {
        let mut rel = Vec::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(root.join(&dir)).unwrap() {
                let e = e.unwrap();
                let kind = e.file_type().unwrap();
                if kind.is_dir() {
                    stack.push(dir.join(e.file_name()));
                } else if kind.is_file() {
                    rel.push(dir.join(e.file_name()));
                }
            }
        }
        rel.sort();
        let data = rel.iter().map(|r| std::fs::read(root.join(r)).unwrap()).collect();
        Tree { root: root.to_owned(), rel, data }
    }
    fn paths(&self) -> Vec<PathBuf> {
        self.rel.iter().map(|r| self.root.join(r)).collect()
    }
    fn bytes(&self) -> u64 {
        self.data.iter().map(|d| d.len() as u64).sum()
    }
}

/// One chunk of a file: offset, length, digest, all zeros.
#[derive(Clone, Copy)]
struct Ch {
    off: u64,
    len: u64,
    digest: Blake3Digest,
    zero: bool,
}

/// A file's identity and chunks, from strata or from a FastCDC parameter set under test.
struct Chunked {
    digest: Blake3Digest,
    chunks: Vec<Ch>,
}

fn from_strata(d: &FileDigests) -> Chunked {
    let chunks =
        d.chunks.iter().map(|c| Ch { off: c.offset, len: c.len.into(), digest: c.digest, zero: c.zero }).collect();
    Chunked { digest: d.blake3, chunks }
}

fn fastcdc_ranges(data: &[u8], (min, avg, max): (usize, usize, usize)) -> Vec<Range<usize>> {
    if data.is_empty() {
        return Vec::new();
    }
    fastcdc::v2020::FastCDC::new(data, min, avg, max).map(|c| c.offset..c.offset + c.length).collect()
}

fn chunk_with(data: &[u8], params: (usize, usize, usize)) -> Chunked {
    let chunks = fastcdc_ranges(data, params)
        .into_iter()
        .map(|r| {
            let d = &data[r.clone()];
            Ch {
                off: r.start as u64,
                len: d.len() as u64,
                digest: Blake3Digest::of(d),
                zero: d.iter().all(|&x| x == 0),
            }
        })
        .collect();
    Chunked { digest: Blake3Digest::of(data), chunks }
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
}

fn gbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}

fn mb(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1e6)
}

fn pct(part: u64, whole: u64) -> String {
    format!("{:.1}%", 100.0 * part as f64 / whole as f64)
}

/// A timed case: a name, the bytes it processes, and the work.
struct Case<'a> {
    name: String,
    bytes: u64,
    work: Box<dyn FnMut() + 'a>,
}

fn case<'a>(name: impl Into<String>, bytes: u64, work: impl FnMut() + 'a) -> Case<'a> {
    Case { name: name.into(), bytes, work: Box::new(work) }
}

/// Runs the cases `runs` times, interleaved; returns the median time of each.
fn measure(runs: usize, cases: &mut [Case<'_>]) -> Vec<Duration> {
    let mut times = vec![Vec::new(); cases.len()];
    for _ in 0..runs {
        for (c, t) in cases.iter_mut().zip(&mut times) {
            let start = Instant::now();
            (c.work)();
            t.push(start.elapsed());
        }
    }
    times
        .into_iter()
        .map(|mut v| {
            v.sort();
            v[v.len() / 2]
        })
        .collect()
}

fn b3sum(threads: Option<usize>, files: &[PathBuf]) {
    let mut cmd = Command::new("b3sum");
    if let Some(t) = threads {
        cmd.arg("--num-threads").arg(t.to_string());
    }
    let st = cmd.arg("--").args(files).stdout(Stdio::null()).status().expect("run b3sum");
    assert!(st.success(), "b3sum failed");
}

fn strata_paths(files: &[PathBuf], opts: HashOptions) {
    for r in digest_paths(files, opts) {
        black_box(r.expect("digest"));
    }
}

// ---------------------------------------------------------------- 1. throughput

fn throughput(runs: usize, b: &Tree, big: &Path, big_len: u64) {
    let (p1, p2) = (pool(1), pool(2));
    let files = b.paths();
    let big_list = [big.to_path_buf()];
    let sha = HashOptions { sha256: true };
    let plain = HashOptions::default();
    for (label, list, bytes) in
        [("rootfs-b, regular files", &files[..], b.bytes()), ("1 GiB random file", &big_list[..], big_len)]
    {
        let one = list.len() == 1;
        let run_strata = |threads: &rayon::ThreadPool, opts: HashOptions| {
            threads.install(|| {
                if one {
                    black_box(digest_path(&list[0], opts).unwrap());
                } else {
                    strata_paths(list, opts);
                }
            })
        };
        let mut cases = [
            case("b3sum --num-threads 1", bytes, || b3sum(Some(1), list)),
            case("b3sum (2 threads)", bytes, || b3sum(None, list)),
            case("strata, 1 thread", bytes, || run_strata(&p1, plain)),
            case("strata, 2 threads", bytes, || run_strata(&p2, plain)),
            case("strata + SHA-256, 1 thread", bytes, || run_strata(&p1, sha)),
            case("strata + SHA-256, 2 threads", bytes, || run_strata(&p2, sha)),
        ];
        let t = measure(runs, &mut cases);
        let b3_1 = gbps(bytes, t[0]);
        let b3_2 = gbps(bytes, t[1]);
        println!("### Chunk+hash throughput: {label} ({} files, {} MB, page cache warm)\n", list.len(), mb(bytes));
        println!("| what | GB/s | vs b3sum 1 thread | vs b3sum 2 threads |");
        println!("|---|---:|---:|---:|");
        for (c, d) in cases.iter().zip(&t) {
            let g = gbps(c.bytes, *d);
            println!("| {} | {:.2} | {:.2}x | {:.2}x |", c.name, g, g / b3_1, g / b3_2);
        }
        println!("\nstrata 2 threads / 1 thread: {:.2}x\n", t[2].as_secs_f64() / t[3].as_secs_f64());
    }
}

// ---------------------------------------------------------------- 2. where the time goes

/// A candidate for `digest_bytes`: one walk over the chunks, hashing each chunk and feeding
/// the same bytes to the file hasher while they are in cache; a file of one chunk reuses the
/// chunk digest as the file digest (identical by definition).
fn fused(data: &[u8]) -> (Blake3Digest, Vec<Blake3Digest>) {
    let bounds = cdc::boundaries(data);
    if bounds.len() <= 1 {
        let d = Blake3Digest::of(data);
        return (d, vec![d]);
    }
    let mut file = blake3::Hasher::new();
    let chunks = bounds
        .iter()
        .map(|r| {
            file.update(&data[r.clone()]);
            Blake3Digest::of(&data[r.clone()])
        })
        .collect();
    (Blake3Digest::from_bytes(*file.finalize().as_bytes()), chunks)
}

fn breakdown(runs: usize, b: &Tree, big: &[u8]) {
    let p1 = pool(1);
    println!("### Where the time goes (1 thread, data in memory)\n");
    println!(
        "| input | FastCDC alone | BLAKE3, one pass | BLAKE3 per chunk | `digest_bytes` | model 1/(1/cdc + 1/b3 + 1/b3 per chunk) | fused one pass (candidate) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let tree: Vec<&[u8]> = b.data.iter().map(|d| &d[..]).collect();
    for (label, set) in [("rootfs-b files", &tree[..]), ("1 GiB random", &[big][..])] {
        let bytes: u64 = set.iter().map(|d| d.len() as u64).sum();
        let bounds: Vec<Vec<Range<usize>>> = set.iter().map(|d| cdc::boundaries(d)).collect();
        let mut cases = [
            case("cdc", bytes, || {
                for d in set {
                    black_box(cdc::boundaries(d));
                }
            }),
            case("b3 one pass", bytes, || {
                for d in set {
                    black_box(Blake3Digest::of(d));
                }
            }),
            case("b3 per chunk", bytes, || {
                for (d, bs) in set.iter().zip(&bounds) {
                    for r in bs {
                        black_box(Blake3Digest::of(&d[r.clone()]));
                    }
                }
            }),
            case("digest_bytes", bytes, || {
                p1.install(|| {
                    for d in set {
                        black_box(digest_bytes(d, HashOptions::default()));
                    }
                })
            }),
            case("fused", bytes, || {
                for d in set {
                    black_box(fused(d));
                }
            }),
        ];
        let t = measure(runs, &mut cases);
        let g: Vec<f64> = t.iter().map(|d| gbps(bytes, *d)).collect();
        let model = 1.0 / (1.0 / g[0] + 1.0 / g[1] + 1.0 / g[2]);
        println!("| {label} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |", g[0], g[1], g[2], g[3], model, g[4]);
    }
    // How the tree's bytes are spread over file sizes decides what parallelism can do.
    let mut classes = [(0u64, 0u64); 3];
    for d in &b.data {
        let n = d.len();
        let k = if n < cdc::MIN_SIZE {
            0
        } else if n < (4 << 20) {
            1
        } else {
            2
        };
        classes[k].0 += 1;
        classes[k].1 += n as u64;
    }
    println!("\nrootfs-b regular files by size:\n");
    println!("| size | files | bytes | share of bytes |");
    println!("|---|---:|---:|---:|");
    for (name, (n, bytes)) in
        ["< 16 KiB (one chunk, no CDC scan)", "16 KiB - 4 MiB", ">= 4 MiB (mapped, rayon inside)"].iter().zip(classes)
    {
        println!("| {name} | {n} | {} MB | {} |", mb(bytes), pct(bytes, b.bytes()));
    }
    println!();
}

// ---------------------------------------------------------------- 3. the pair

/// Where a's bytes are, as the index records them: the first location per digest.
struct Seed {
    by_path: HashMap<PathBuf, usize>,
    files: HashMap<Blake3Digest, usize>,
    chunks: HashMap<Blake3Digest, (usize, u64)>,
}

impl Seed {
    fn new(a: &Tree, ac: &[Chunked]) -> Seed {
        let mut s = Seed { by_path: HashMap::new(), files: HashMap::new(), chunks: HashMap::new() };
        for (i, (rel, c)) in a.rel.iter().zip(ac).enumerate() {
            s.by_path.insert(rel.clone(), i);
            s.files.entry(c.digest).or_insert(i);
            for ch in c.chunks.iter().filter(|ch| !ch.zero) {
                s.chunks.entry(ch.digest).or_insert((i, ch.off));
            }
        }
        s
    }
}

#[derive(Default)]
struct PairFigures {
    b_bytes: u64,
    same_path: u64,
    same_content: u64,
    chunk_found: u64,
    chunk_phase: u64,
    /// Files of b at a path of a with other content, and what of them chunks find in a.
    changed: u64,
    changed_found: u64,
    zero: u64,
    /// What the store's plan can share: whole files by FICLONE, else the block-aligned
    /// interior of each run of found chunks that are contiguous in one source with the same phase.
    plan_shared: u64,
    b_chunks: u64,
    b_chunk_keys: u64,
}

/// Bytes of a run (dst_off..+len from src_off) that FICLONERANGE can share.
fn clonable(src_off: u64, dst_off: u64, len: u64, at_both_eofs: bool) -> u64 {
    if src_off % BLOCK != dst_off % BLOCK {
        return 0;
    }
    let head = (BLOCK - dst_off % BLOCK) % BLOCK;
    if head >= len {
        return 0;
    }
    let aligned = (len - head) / BLOCK * BLOCK;
    if at_both_eofs { len - head } else { aligned }
}

fn analyze(a: &Tree, ac: &[Chunked], b: &Tree, bc: &[Chunked]) -> PairFigures {
    let seed = Seed::new(a, ac);
    let mut f = PairFigures::default();
    for ((rel, data), c) in b.rel.iter().zip(&b.data).zip(bc) {
        let size = data.len() as u64;
        f.b_bytes += size;
        f.b_chunks += c.chunks.len() as u64;
        if c.chunks.len() > 1 {
            f.b_chunk_keys += c.chunks.len() as u64;
        }
        let at_path = seed.by_path.get(rel).map(|&i| ac[i].digest);
        if at_path == Some(c.digest) {
            f.same_path += size;
        }
        let changed = at_path.is_some_and(|d| d != c.digest);
        if changed {
            f.changed += size;
        }
        let whole = seed.files.contains_key(&c.digest) && size > 0;
        if whole {
            f.same_content += size;
            f.plan_shared += size;
        }
        // Runs of found chunks, contiguous in one source: (source file, source start, destination start, length).
        let mut run: Option<(usize, u64, u64, u64)> = None;
        let mut runs_shared = 0;
        let mut close = |run: &mut Option<(usize, u64, u64, u64)>| {
            if let Some((src, s, d, len)) = run.take() {
                runs_shared += clonable(s, d, len, d + len == size && s + len == a.data[src].len() as u64);
            }
        };
        for ch in &c.chunks {
            let found = if ch.zero { None } else { seed.chunks.get(&ch.digest) };
            let Some(&(src, src_off)) = found else {
                if ch.zero {
                    f.zero += ch.len;
                }
                close(&mut run);
                continue;
            };
            f.chunk_found += ch.len;
            if changed {
                f.changed_found += ch.len;
            }
            if src_off % BLOCK == ch.off % BLOCK {
                f.chunk_phase += ch.len;
            }
            match &mut run {
                Some((s, start, _, len)) if *s == src && *start + *len == src_off => *len += ch.len,
                _ => {
                    close(&mut run);
                    run = Some((src, src_off, ch.off, ch.len));
                }
            }
        }
        close(&mut run);
        if !whole {
            f.plan_shared += runs_shared;
        }
    }
    f
}

fn print_pair(f: &PairFigures, b_files: usize) {
    println!("### The debootstrap pair: what of b is already in a (strata's chunks, 16/64/256 KiB)\n");
    println!("b: {b_files} regular files, {} MB (logical).\n", mb(f.b_bytes));
    println!("| bytes of b | MB | share of b |");
    println!("|---|---:|---:|");
    for (name, v) in [
        ("(a) identical whole files at the same path in a", f.same_path),
        ("(b) identical whole files anywhere in a (content digest)", f.same_content),
        ("(c) in FastCDC chunks that also occur in a", f.chunk_found),
        ("(c') ... of which the chunk's 4 KiB phase matches its location in a", f.chunk_phase),
        (
            "shareable by the store's plan (whole files by FICLONE, else aligned interiors of phase-matched runs)",
            f.plan_shared,
        ),
        ("all-zero chunks (holes)", f.zero),
        ("files of b at a path of a but with other content", f.changed),
        ("... of which in chunks that occur in a", f.changed_found),
    ] {
        println!("| {name} | {} | {} |", mb(v), pct(v, f.b_bytes));
    }
    println!();
}

// ---------------------------------------------------------------- 3b. for real on XFS

#[derive(Default)]
struct XfsFigures {
    allocated: u64,
    shared_extents: u64,
    unshared_extents: u64,
    done: Assembled,
    secs: f64,
}

fn free_bytes(p: &Path) -> u64 {
    let fs = File::open(p).unwrap();
    nix::unistd::syncfs(&fs).unwrap();
    let st = nix::sys::statvfs::statvfs(p).unwrap();
    st.blocks_free() * st.fragment_size()
}

fn create(p: &Path) -> File {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    File::options().write(true).create_new(true).mode(0o644).open(p).unwrap()
}

/// Copies a into a fresh XFS, then writes b next to it (assembled from a, or plainly).
fn on_xfs(a: &Tree, ac: &[Chunked], b: &Tree, bc: &[Chunked], assemble: bool) -> XfsFigures {
    let m = strata_testutil::LoopMount::xfs(2048);
    let (ra, rb) = (m.path().join("a"), m.path().join("b"));
    for (rel, data) in a.rel.iter().zip(&a.data) {
        let p = ra.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    let before = free_bytes(m.path());
    let seed = Seed::new(a, ac);
    let mut asm = Assembler::new();
    let mut out = XfsFigures::default();
    let t = Instant::now();
    for ((rel, data), c) in b.rel.iter().zip(&b.data).zip(bc) {
        let dst = create(&rb.join(rel));
        if !assemble {
            std::os::unix::fs::FileExt::write_all_at(&dst, data, 0).unwrap();
            continue;
        }
        let size = data.len() as u64;
        if let Some(&i) = seed.files.get(&c.digest).filter(|_| size > 0) {
            let src = LocalRange {
                source: ra.join(&a.rel[i]).into(),
                offset: 0,
                len: size,
                expect: Expect::Blake3(c.digest),
            };
            let done = asm.reuse_whole(&dst, &src).unwrap().expect("a's copy verifies");
            add(&mut out.done, &done);
            continue;
        }
        let pieces: Vec<Piece<'_>> = c
            .chunks
            .iter()
            .map(|ch| {
                let bytes = &data[ch.off as usize..(ch.off + ch.len) as usize];
                if ch.zero {
                    return Piece { len: ch.len, local: None, fill: Fill::Zeros };
                }
                let local = seed.chunks.get(&ch.digest).map(|&(i, off)| LocalRange {
                    source: ra.join(&a.rel[i]).into(),
                    offset: off,
                    len: ch.len,
                    expect: Expect::Blake3(ch.digest),
                });
                Piece { len: ch.len, local, fill: Fill::Bytes(bytes) }
            })
            .collect();
        let done = asm.assemble(&dst, &pieces).unwrap();
        assert!(done.missing.is_empty() && done.rejected_local == 0);
        add(&mut out.done, &done);
    }
    let after = free_bytes(m.path());
    out.secs = t.elapsed().as_secs_f64();
    out.allocated = before - after;
    for rel in &b.rel {
        for e in strata_sys::fiemap(&File::open(rb.join(rel)).unwrap()).unwrap() {
            if e.flags.is_shared() {
                out.shared_extents += e.length;
            } else {
                out.unshared_extents += e.length;
            }
        }
    }
    out
}

fn add(total: &mut Assembled, one: &Assembled) {
    total.reflinked += one.reflinked;
    total.copied += one.copied;
    total.written += one.written;
    total.holes += one.holes;
}

fn print_xfs(plain: &XfsFigures, strata: &XfsFigures, b_bytes: u64) {
    println!("### The debootstrap pair on XFS (reflink=1, loop mount): b written next to a\n");
    println!(
        "| b written by | blocks allocated for b (statvfs) | vs b's logical size | FIEMAP: b's extents shared / not shared | time (s) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (name, x) in [("plain copy", plain), ("strata Assembler from a's chunks", strata)] {
        println!(
            "| {name} | {} MB | {} | {} MB / {} MB | {:.2} |",
            mb(x.allocated),
            pct(x.allocated, b_bytes),
            mb(x.shared_extents),
            mb(x.unshared_extents),
            x.secs
        );
    }
    let d = &strata.done;
    println!(
        "\nAssembler: {} MB reflinked, {} MB copied from a (phase mismatch or unaligned edges), {} MB written from b, {} MB holes.\n",
        mb(d.reflinked),
        mb(d.copied),
        mb(d.written),
        mb(d.holes)
    );
}

// ---------------------------------------------------------------- 4. parameters

/// Bytes of `b` in FastCDC chunks (cut over the whole stream) that also occur in `a`.
fn stream_found(a: &[u8], b: &[u8], params: (usize, usize, usize)) -> u64 {
    let seen: std::collections::HashSet<Blake3Digest> =
        fastcdc_ranges(a, params).into_iter().map(|r| Blake3Digest::of(&a[r])).collect();
    fastcdc_ranges(b, params)
        .into_iter()
        .filter(|r| seen.contains(&Blake3Digest::of(&b[r.clone()])))
        .map(|r| r.len() as u64)
        .sum()
}

fn parameters(runs: usize, a: &Tree, b: &Tree, big: &[u8], strata_b: &[Chunked], tars: Option<&(Vec<u8>, Vec<u8>)>) {
    println!("### FastCDC parameters on the pair (chunk level; throughput 1 thread, in memory)\n");
    println!(
        "| min/avg/max KiB | chunks of b | mean chunk | chunk keys of b (files of 2+ chunks) | b found in a (chunks) | ... phase-matched | shareable by plan | changed files: found in a | b.tar found in a.tar (whole-stream CDC) | FastCDC alone, 1 GiB (GB/s) | FastCDC + BLAKE3 per chunk, 1 GiB (GB/s) | same, rootfs-b (GB/s) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (min, avg, max) in [(8, 32, 128), (16, 64, 256), (32, 128, 512)] {
        let params = (min * KIB, avg * KIB, max * KIB);
        let chunk_all = |t: &Tree| -> Vec<Chunked> {
            use rayon::prelude::*;
            t.data.par_iter().map(|d| chunk_with(d, params)).collect()
        };
        let (ac, bc) = (chunk_all(a), chunk_all(b));
        if params == (cdc::MIN_SIZE, cdc::AVG_SIZE, cdc::MAX_SIZE) {
            // The sweep's chunker must be strata's for its row to mean anything.
            for (x, y) in bc.iter().zip(strata_b) {
                assert!(
                    x.chunks.len() == y.chunks.len()
                        && x.chunks.iter().zip(&y.chunks).all(|(p, q)| p.digest == q.digest)
                );
            }
        }
        let f = analyze(a, &ac, b, &bc);
        let mut cases = [
            case("cdc big", big.len() as u64, || {
                black_box(fastcdc_ranges(big, params));
            }),
            case("cdc+b3 big", big.len() as u64, || {
                for r in fastcdc_ranges(big, params) {
                    black_box(Blake3Digest::of(&big[r]));
                }
            }),
            case("cdc+b3 tree", b.bytes(), || {
                for d in &b.data {
                    for r in fastcdc_ranges(d, params) {
                        black_box(Blake3Digest::of(&d[r]));
                    }
                }
            }),
        ];
        let t = measure(runs, &mut cases);
        let tar = tars.map_or("-".to_owned(), |(ta, tb)| {
            let found = stream_found(ta, tb, params);
            format!("{} MB ({})", mb(found), pct(found, tb.len() as u64))
        });
        println!(
            "| {min}/{avg}/{max} | {} | {:.1} KiB | {} | {} MB ({}) | {} MB ({}) | {} MB ({}) | {} of {} MB | {tar} | {:.2} | {:.2} | {:.2} |",
            f.b_chunks,
            f.b_bytes as f64 / f.b_chunks as f64 / 1024.0,
            f.b_chunk_keys,
            mb(f.chunk_found),
            pct(f.chunk_found, f.b_bytes),
            mb(f.chunk_phase),
            pct(f.chunk_phase, f.b_bytes),
            mb(f.plan_shared),
            pct(f.plan_shared, f.b_bytes),
            mb(f.changed_found),
            mb(f.changed),
            gbps(big.len() as u64, t[0]),
            gbps(big.len() as u64, t[1]),
            gbps(b.bytes(), t[2]),
        );
    }
    println!();
}

// ----------------------------------------------------------------

fn random_file(path: &Path, len: u64) -> Vec<u8> {
    let mut data = vec![0u8; len as usize];
    blake3::Hasher::new().update(b"strata chunker bench").finalize_xof().fill(&mut data);
    std::fs::write(path, &data).unwrap();
    data
}

fn main() {
    let env_path = |k: &str, d: PathBuf| std::env::var_os(k).map(PathBuf::from).unwrap_or(d);
    let base = env_path("STRATA_BENCH_TMP", "/var/tmp".into());
    let runs: usize = std::env::var("STRATA_BENCH_RUNS").map(|s| s.parse().expect("STRATA_BENCH_RUNS")).unwrap_or(5);
    let big_mib: u64 =
        std::env::var("STRATA_BENCH_BIG_MIB").map(|s| s.parse().expect("STRATA_BENCH_BIG_MIB")).unwrap_or(1024);
    let load =
        || std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split(' ').next().unwrap_or("").to_owned();
    println!("load average at start: {}; runs per case: {runs}\n", load());

    // Reading everything also warms the page cache for b3sum and strata alike.
    let peers = strata_testutil::peers_dir();
    let a = Tree::load(&env_path("STRATA_BENCH_A", peers.join("rootfs-a")));
    let b = Tree::load(&env_path("STRATA_BENCH_B", peers.join("rootfs-b")));
    let scratch = tempfile::Builder::new().prefix("strata-bench-chunker-").tempdir_in(&base).unwrap();
    let big_path = scratch.path().join("random");
    let big = random_file(&big_path, big_mib << 20);

    throughput(runs, &b, &big_path, big.len() as u64);
    breakdown(runs, &b, &big);

    let digests = |t: &Tree| -> Vec<Chunked> {
        digest_paths(&t.paths(), HashOptions::default()).into_iter().map(|r| from_strata(&r.unwrap())).collect()
    };
    let (ac, bc) = (digests(&a), digests(&b));
    print_pair(&analyze(&a, &ac, &b, &bc), b.rel.len());
    if nix::unistd::geteuid().is_root() && strata_testutil::require_tool("mkfs.xfs") {
        let plain = on_xfs(&a, &ac, &b, &bc, false);
        let strata = on_xfs(&a, &ac, &b, &bc, true);
        print_xfs(&plain, &strata, b.bytes());
    } else {
        println!("(XFS part skipped: needs root and mkfs.xfs)\n");
    }
    let tar_dir = env_path("STRATA_BENCH_TARS", peers.join("tars"));
    let tars = std::fs::read(tar_dir.join("rootfs-a.tar")).ok().zip(std::fs::read(tar_dir.join("rootfs-b.tar")).ok());
    parameters(runs, &a, &b, &big, &bc, tars.as_ref());
    println!("load average at end: {}", load());
}
