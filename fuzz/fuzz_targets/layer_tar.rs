//! The layer tar parser on hostile bytes. First byte: bit 0 = the rest is raw tar (else a
//! [`Spec`] that builds one), bit 1 = repair header checksums of a raw tar, bits 2.. seed
//! the read pattern.
//!
//! Oracles:
//! - [`TarReader`] never panics or hangs; its tap sees the [`TarOut`] protocol
//!   (`file_begin(raw_name, size)`, exactly `size` payload bytes, `file_end`) and receives
//!   exactly the bytes it consumed, in order: a prefix of the input, the whole input once
//!   the archive ended;
//! - [`HeaderParser`] fed the same bytes in random splits (payload accounted, not fed)
//!   agrees with the reader: the same headers, the same verdict, the same error.
#![no_main]

use std::io::{self, Read};

use libfuzzer_sys::fuzz_target;
use strata_fuzz::checksum::fix_checksums;
use strata_fuzz::input::Bytes;
use strata_fuzz::tarspec::Spec;
use strata_layer::TarOut;
use strata_layer::parse::{Header, HeaderParser, ParseError, Parsed, TarReader};

/// A tap that records the stream and checks the call protocol.
#[derive(Default)]
struct Recorder {
    stream: Vec<u8>,
    open: Option<(Vec<u8>, u64, u64)>,
    begun: Vec<(Vec<u8>, u64)>,
}

impl TarOut for Recorder {
    fn segment(&mut self, b: &[u8]) -> io::Result<()> {
        assert!(self.open.is_none(), "segment inside a payload");
        self.stream.extend_from_slice(b);
        Ok(())
    }
    fn file_begin(&mut self, name: &[u8], size: u64) -> io::Result<()> {
        assert!(self.open.is_none(), "file_begin inside a payload");
        self.open = Some((name.to_vec(), size, 0));
        self.begun.push((name.to_vec(), size));
        Ok(())
    }
    fn file_data(&mut self, b: &[u8]) -> io::Result<()> {
        let (_, size, done) = self.open.as_mut().expect("file_data outside a payload");
        *done += b.len() as u64;
        assert!(*done <= *size, "more payload than announced");
        self.stream.extend_from_slice(b);
        Ok(())
    }
    fn file_end(&mut self) -> io::Result<()> {
        let (_, size, done) = self.open.take().expect("file_end outside a payload");
        assert_eq!(done, size, "payload shorter than announced");
        Ok(())
    }
}

/// A reader handing out at most a few bytes per call, to exercise short reads.
struct Trickle<'a> {
    data: &'a [u8],
    rng: u64,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let n = (1 + self.rng % 700).min(buf.len() as u64).min(self.data.len() as u64) as usize;
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Verdict of a run: the headers seen, and how it ended.
#[derive(Debug, PartialEq)]
struct Verdict {
    headers: Vec<Header>,
    end: Result<(), String>,
}

/// Errors both sides can report identically (truncation is described differently: the
/// parser alone cannot know the input ended).
fn describe(e: &ParseError) -> String {
    match e {
        ParseError::Truncated { .. } => "truncated".into(),
        e => e.to_string(),
    }
}

fn with_reader(tar: &[u8], seed: u64) -> Verdict {
    let mut r = TarReader::with_tap(Trickle { data: tar, rng: seed | 1 }, Recorder::default());
    let mut headers = Vec::new();
    let mut buf = [0u8; 97];
    let end = loop {
        match r.next_header() {
            Ok(Some(h)) => {
                // Read part of the payload through `payload()`, leave the rest to next_header.
                let mut want = (seed as usize ^ headers.len()) % 300;
                while want > 0 {
                    match r.payload().read(&mut buf[..want.min(97)]) {
                        Ok(0) => break,
                        Ok(n) => want -= n.min(want),
                        Err(_) => break,
                    }
                }
                headers.push(h);
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    let offset = r.offset();
    let rec = r.into_tap();
    assert!(tar.starts_with(&rec.stream), "the tap received bytes that are not the input's");
    assert!(rec.stream.len() as u64 >= offset.min(tar.len() as u64));
    let names: Vec<_> = headers.iter().map(|h| (h.raw_name.clone(), h.entry.size)).collect();
    assert_eq!(rec.begun, names, "file_begin does not match the headers");
    if end.is_ok() {
        assert_eq!(rec.stream, tar, "the archive ended but the tap did not receive all of it");
        assert_eq!(offset, tar.len() as u64);
    }
    Verdict { headers, end: end.map_err(|e| describe(&e)) }
}

fn with_parser(tar: &[u8], seed: u64) -> Verdict {
    let mut p = HeaderParser::default();
    let mut headers = Vec::new();
    let (mut rest, mut rng) = (tar, seed | 1);
    let end = loop {
        if rest.is_empty() {
            break if p.at_end() { Ok(()) } else { Err("truncated".to_owned()) };
        }
        let due = p.payload_remaining();
        if due > 0 {
            let n = due.min(rest.len() as u64);
            p.payload(n).expect("payload that is due is accepted");
            rest = &rest[n as usize..];
            continue;
        }
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let split = (1 + (rng >> 33) % 1100).min(rest.len() as u64) as usize;
        let offset = p.offset();
        match p.feed(&rest[..split]) {
            Ok((used, parsed)) => {
                assert!(used <= split);
                assert_eq!(p.offset(), offset + used as u64, "offset does not count what was consumed");
                rest = &rest[used..];
                match parsed {
                    Some(Parsed::Header(h)) => headers.push(h),
                    Some(Parsed::End) => assert!(p.at_end()),
                    None => assert_eq!(used, split, "the parser stopped early without a result"),
                }
            }
            Err(e) => break Err(describe(&e)),
        }
    };
    Verdict { headers, end }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let mut tar = if flags & 1 == 1 { rest.to_vec() } else { Spec::from_bytes(&mut Bytes(rest)).to_tar() };
    if flags & 3 == 3 {
        fix_checksums(&mut tar, 32);
    }
    let seed = u64::from(flags >> 2).wrapping_mul(0x9e3779b97f4a7c15) ^ tar.len() as u64;
    let a = with_reader(&tar, seed);
    let b = with_parser(&tar, seed);
    assert_eq!(a, b, "TarReader and HeaderParser disagree");
});
