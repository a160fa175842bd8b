//! [`HeaderTracker`]: parse the headers of a stream that arrives as [`TarOut`] calls.

use std::fs::File;
use std::io;

use super::{Header, HeaderParser, Limits, ParseError, Parsed};
use crate::TarOut;

/// A [`TarOut`] that parses the headers of the stream it is given and checks that the
/// producer follows the protocol (every `file_begin` names the entry whose header was just
/// sent, with its size; payloads have exactly that size).
///
/// Typical use inside another sink:
///
/// ```
/// use std::io;
/// use strata_layer::TarOut;
/// use strata_layer::parse::{HeaderTracker, TarReader};
///
/// /// A sink that lists the entries of the stream it receives.
/// #[derive(Default)]
/// struct Lister {
///     tracker: HeaderTracker,
///     names: Vec<String>,
/// }
///
/// impl TarOut for Lister {
///     fn segment(&mut self, b: &[u8]) -> io::Result<()> {
///         self.tracker.segment(b)
///     }
///     fn file_begin(&mut self, name: &[u8], size: u64) -> io::Result<()> {
///         self.tracker.file_begin(name, size)?;
///         let header = self.tracker.current().expect("set by file_begin");
///         self.names.push(format!("{} {:?}", header.entry.path, header.entry.kind));
///         Ok(())
///     }
///     fn file_data(&mut self, b: &[u8]) -> io::Result<()> {
///         self.tracker.file_data(b)
///     }
///     fn file_end(&mut self) -> io::Result<()> {
///         self.tracker.file_end()
///     }
/// }
///
/// let mut b = tar::Builder::new(Vec::new());
/// let mut h = tar::Header::new_ustar();
/// h.set_size(5);
/// b.append_data(&mut h, "etc/motd", &b"hello"[..]).unwrap();
/// let tar = b.into_inner().unwrap();
///
/// let mut reader = TarReader::with_tap(&tar[..], Lister::default());
/// while reader.next_header().unwrap().is_some() {}
/// let lister = reader.into_tap();
/// lister.tracker.finish().unwrap();
/// assert_eq!(lister.names, ["etc/motd File"]);
/// ```
///
/// `file_from` is accounted without reading the file. Errors are `io::Error`s of kind
/// `InvalidData` wrapping a [`ParseError`] (`get_ref()`/`into_inner()` + `downcast`).
#[derive(Debug, Default)]
pub struct HeaderTracker {
    parser: HeaderParser,
    /// Parsed from the last segment(s), waiting for `file_begin`.
    pending: Option<Header>,
    /// The entry whose payload is being written (from `file_begin` to the next header).
    current: Option<Header>,
    entries: u64,
}

impl HeaderTracker {
    pub fn new(limits: Limits) -> Self {
        HeaderTracker { parser: HeaderParser::new(limits), ..Default::default() }
    }

    /// The entry announced by the last `file_begin` (kept until the next one).
    pub fn current(&self) -> Option<&Header> {
        self.current.as_ref()
    }

    /// True once the end-of-archive marker has gone through.
    pub fn at_end(&self) -> bool {
        self.parser.at_end()
    }

    /// Entries seen so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Stream bytes seen so far.
    pub fn offset(&self) -> u64 {
        self.parser.offset()
    }

    /// Checks that the stream ended properly (call after the last `TarOut` call).
    pub fn finish(&self) -> Result<(), ParseError> {
        if self.parser.at_end() {
            Ok(())
        } else {
            Err(ParseError::Truncated { offset: self.parser.offset(), what: self.parser.expecting().to_owned() })
        }
    }
}

fn protocol(msg: String) -> io::Error {
    ParseError::Protocol(msg).into()
}

impl TarOut for HeaderTracker {
    fn segment(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let (used, parsed) = self.parser.feed(bytes)?;
            bytes = &bytes[used..];
            match parsed {
                Some(Parsed::Header(h)) => {
                    if let Some(prev) = self.pending.replace(h) {
                        return Err(protocol(format!(
                            "no file_begin for entry {:?}",
                            String::from_utf8_lossy(&prev.raw_name)
                        )));
                    }
                }
                Some(Parsed::End) | None => {}
            }
        }
        Ok(())
    }

    fn file_begin(&mut self, name: &[u8], size: u64) -> io::Result<()> {
        let Some(h) = self.pending.take() else {
            return Err(protocol(format!(
                "file_begin({:?}) without a complete header before it",
                String::from_utf8_lossy(name)
            )));
        };
        if h.raw_name != name || h.entry.size != size {
            return Err(protocol(format!(
                "file_begin({:?}, {size}) but the header says {:?} with {} bytes",
                String::from_utf8_lossy(name),
                String::from_utf8_lossy(&h.raw_name),
                h.entry.size
            )));
        }
        self.current = Some(h);
        self.entries += 1;
        Ok(())
    }

    fn file_data(&mut self, bytes: &[u8]) -> io::Result<()> {
        Ok(self.parser.payload(bytes.len() as u64)?)
    }

    fn file_from(&mut self, _file: &File, _offset: u64, len: u64) -> io::Result<()> {
        Ok(self.parser.payload(len)?)
    }

    fn file_end(&mut self) -> io::Result<()> {
        match self.parser.payload_remaining() {
            0 => Ok(()),
            left => Err(protocol(format!("file_end with {left} payload bytes still due"))),
        }
    }
}
