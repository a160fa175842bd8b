//! [`TarReader`]: entries and payloads from an `impl Read`, every byte passed to a tap.

use std::io::{self, BufReader, Read};

use super::{Header, HeaderParser, Limits, ParseError, Parsed};
use crate::TarOut;

/// A [`TarOut`] that drops everything: the default tap of a [`TarReader`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Discard;

impl TarOut for Discard {
    fn segment(&mut self, _: &[u8]) -> io::Result<()> {
        Ok(())
    }
    fn file_begin(&mut self, _: &[u8], _: u64) -> io::Result<()> {
        Ok(())
    }
    fn file_data(&mut self, _: &[u8]) -> io::Result<()> {
        Ok(())
    }
    fn file_from(&mut self, _: &std::fs::File, _: u64, _: u64) -> io::Result<()> {
        Ok(())
    }
    fn file_end(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Headers,
    Payload,
    Done,
    Failed,
}

/// Reads a tar stream entry by entry.
///
/// Everything read from the stream goes to the tap `T`, in stream order, following the
/// [`TarOut`] protocol: non-payload bytes as segments, and for every entry
/// `file_begin(raw_name, size)`, its payload, `file_end()`. The concatenation of what the tap
/// receives is the input, byte for byte, once [`next_header`](Self::next_header) has
/// returned `Ok(None)` (which happens after the end-of-archive marker and whatever follows it
/// up to EOF have been read).
///
/// Payload not read through [`payload`](Self::payload) is read (and tapped) by the next
/// `next_header` call. The first error ends the stream: later calls fail.
#[derive(Debug)]
pub struct TarReader<R, T = Discard> {
    inner: BufReader<R>,
    tap: T,
    parser: HeaderParser,
    phase: Phase,
    current_name: String,
    error: Option<ParseError>,
    scratch: Vec<u8>,
}

const CHUNK: usize = 256 << 10;

impl<R: Read> TarReader<R, Discard> {
    /// A reader without a tap.
    pub fn new(inner: R) -> Self {
        Self::with_tap(inner, Discard)
    }
}

impl<R: Read, T: TarOut> TarReader<R, T> {
    /// A reader that passes the exact stream to `tap`.
    pub fn with_tap(inner: R, tap: T) -> Self {
        Self::with_limits(inner, tap, Limits::default())
    }

    pub fn with_limits(inner: R, tap: T, limits: Limits) -> Self {
        TarReader {
            inner: BufReader::with_capacity(CHUNK, inner),
            tap,
            parser: HeaderParser::new(limits),
            phase: Phase::Headers,
            current_name: String::new(),
            error: None,
            scratch: vec![0; 64 << 10],
        }
    }

    /// Stream bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.parser.offset()
    }

    pub fn tap_mut(&mut self) -> &mut T {
        &mut self.tap
    }

    pub fn into_tap(self) -> T {
        self.tap
    }

    /// Payload bytes of the current entry not read yet.
    pub fn payload_remaining(&self) -> u64 {
        if self.phase == Phase::Payload { self.parser.payload_remaining() } else { 0 }
    }

    /// The error that made a [`Payload`] read fail (its `io::Error` only carries text).
    pub fn take_error(&mut self) -> Option<ParseError> {
        self.error.take()
    }

    /// The next entry's headers; `Ok(None)` after the end of the archive.
    pub fn next_header(&mut self) -> Result<Option<Header>, ParseError> {
        match self.phase {
            Phase::Done => return Ok(None),
            Phase::Failed => {
                return Err(self
                    .error
                    .take()
                    .unwrap_or_else(|| ParseError::Protocol("the tar stream already failed".into())));
            }
            Phase::Headers | Phase::Payload => {}
        }
        let result = self.advance();
        if result.is_err() {
            self.phase = Phase::Failed;
        }
        result
    }

    /// A reader of the current entry's payload: at most its remaining bytes, then EOF. A
    /// stream that ends early makes it fail with `UnexpectedEof`; the typed error is then
    /// available from [`take_error`](Self::take_error).
    pub fn payload(&mut self) -> Payload<'_, R, T> {
        Payload { reader: self }
    }

    fn advance(&mut self) -> Result<Option<Header>, ParseError> {
        if self.phase == Phase::Payload {
            while self.parser.payload_remaining() > 0 {
                let want = self.parser.payload_remaining().min(self.scratch.len() as u64) as usize;
                let n = read_full(&mut self.inner, &mut self.scratch[..want], self.parser.offset())?;
                if n == 0 {
                    return Err(self.truncated_payload());
                }
                self.tap.file_data(&self.scratch[..n]).map_err(ParseError::Sink)?;
                self.parser.payload(n as u64)?;
            }
            self.tap.file_end().map_err(ParseError::Sink)?;
            self.phase = Phase::Headers;
        }
        loop {
            let want = self.parser.wants().min(self.scratch.len() as u64) as usize;
            let n = read_full(&mut self.inner, &mut self.scratch[..want], self.parser.offset())?;
            if n < want {
                return Err(ParseError::Truncated {
                    offset: self.parser.offset() + n as u64,
                    what: self.parser.expecting().to_owned(),
                });
            }
            self.tap.segment(&self.scratch[..n]).map_err(ParseError::Sink)?;
            let (used, parsed) = self.parser.feed(&self.scratch[..n])?;
            debug_assert_eq!(used, n, "the parser asked for exactly these bytes");
            match parsed {
                Some(Parsed::Header(h)) => {
                    self.tap.file_begin(&h.raw_name, h.entry.size).map_err(ParseError::Sink)?;
                    self.current_name = String::from_utf8_lossy(&h.raw_name).into_owned();
                    self.phase = Phase::Payload;
                    return Ok(Some(h));
                }
                Some(Parsed::End) => {
                    self.drain_trailer()?;
                    self.phase = Phase::Done;
                    return Ok(None);
                }
                None => {}
            }
        }
    }

    /// Passes everything after the end-of-archive marker to the tap.
    fn drain_trailer(&mut self) -> Result<(), ParseError> {
        loop {
            let n = read_full(&mut self.inner, &mut self.scratch, self.parser.offset())?;
            if n == 0 {
                return Ok(());
            }
            self.tap.segment(&self.scratch[..n]).map_err(ParseError::Sink)?;
            self.parser.feed(&self.scratch[..n])?;
        }
    }

    fn truncated_payload(&self) -> ParseError {
        ParseError::Truncated {
            offset: self.parser.offset(),
            what: format!("the data of {:?} ({} bytes missing)", self.current_name, self.parser.payload_remaining()),
        }
    }
}

/// Reads until `buf` is full or EOF; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8], offset: u64) -> Result<usize, ParseError> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(ParseError::Io { offset: offset + n as u64, source }),
        }
    }
    Ok(n)
}

/// The payload of the current entry of a [`TarReader`]; see [`TarReader::payload`].
#[derive(Debug)]
pub struct Payload<'a, R, T> {
    reader: &'a mut TarReader<R, T>,
}

impl<R: Read, T: TarOut> Payload<'_, R, T> {
    fn fail(&mut self, e: ParseError) -> io::Error {
        let io = io::Error::new(
            match &e {
                ParseError::Truncated { .. } => io::ErrorKind::UnexpectedEof,
                ParseError::Io { source, .. } | ParseError::Sink(source) => source.kind(),
                _ => io::ErrorKind::InvalidData,
            },
            e.to_string(),
        );
        self.reader.error = Some(e);
        self.reader.phase = Phase::Failed;
        io
    }
}

impl<R: Read, T: TarOut> Read for Payload<'_, R, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let remaining = self.reader.payload_remaining();
        if remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = remaining.min(buf.len() as u64) as usize;
        let offset = self.reader.parser.offset();
        let n = loop {
            match self.reader.inner.read(&mut buf[..want]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(self.fail(ParseError::Io { offset, source })),
            }
        };
        if n == 0 {
            let e = self.reader.truncated_payload();
            return Err(self.fail(e));
        }
        if let Err(e) = self.reader.tap.file_data(&buf[..n]) {
            return Err(self.fail(ParseError::Sink(e)));
        }
        self.reader.parser.payload(n as u64).map_err(|e| self.fail(e))?;
        Ok(n)
    }
}
