//! [`TarOut`]: a layer tar stream as a sequence of raw segments and file payloads.
//!
//! A tar stream is, byte for byte, the concatenation of everything passed to
//! [`TarOut::segment`] and every payload, in call order. For *every* tar entry (directories,
//! links and devices too) a producer calls, after the entry's header bytes:
//! `file_begin(name, size)`, then payload bytes (`file_data` and/or `file_from`) totalling
//! exactly `size`, then `file_end()`. `size` is 0 for entries without data. Padding after a
//! payload and the end-of-archive blocks are segments. This is the shape of tar-split (a
//! segment record, then a file record per entry), so a recorder can be one more `TarOut`.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// A consumer of a layer tar stream. See the module docs for the call protocol.
pub trait TarOut {
    /// Stream bytes that are not file payload: headers, PAX records, padding, the trailer.
    fn segment(&mut self, bytes: &[u8]) -> io::Result<()>;

    /// Starts the payload of the entry whose header was just passed as a segment. `name` is
    /// the entry's name exactly as its header spells it (raw bytes).
    fn file_begin(&mut self, name: &[u8], size: u64) -> io::Result<()>;

    /// Payload bytes of the current entry.
    fn file_data(&mut self, bytes: &[u8]) -> io::Result<()>;

    /// Payload bytes of the current entry taken from `len` bytes of `file` at `offset`.
    /// Sinks that can move data without reading it (copy_file_range, reflinks) override
    /// this; the default reads and forwards to [`TarOut::file_data`].
    fn file_from(&mut self, file: &File, offset: u64, len: u64) -> io::Result<()> {
        let mut buf = vec![0u8; len.min(1 << 20) as usize];
        let mut done = 0u64;
        while done < len {
            let want = (len - done).min(buf.len() as u64) as usize;
            let n = file.read_at(&mut buf[..want], offset + done)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("file shrank while being written to the layer: wanted {len} bytes at {offset}, got {done}"),
                ));
            }
            self.file_data(&buf[..n])?;
            done += n as u64;
        }
        Ok(())
    }

    /// Ends the current entry's payload.
    fn file_end(&mut self) -> io::Result<()>;
}

impl<T: TarOut + ?Sized> TarOut for &mut T {
    fn segment(&mut self, bytes: &[u8]) -> io::Result<()> {
        (**self).segment(bytes)
    }
    fn file_begin(&mut self, name: &[u8], size: u64) -> io::Result<()> {
        (**self).file_begin(name, size)
    }
    fn file_data(&mut self, bytes: &[u8]) -> io::Result<()> {
        (**self).file_data(bytes)
    }
    fn file_from(&mut self, file: &File, offset: u64, len: u64) -> io::Result<()> {
        (**self).file_from(file, offset, len)
    }
    fn file_end(&mut self) -> io::Result<()> {
        (**self).file_end()
    }
}

/// Feeds one stream to two sinks (e.g. the output file and a DiffID hasher).
#[derive(Debug)]
pub struct Tee<A, B>(pub A, pub B);

impl<A: TarOut, B: TarOut> TarOut for Tee<A, B> {
    fn segment(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.segment(bytes)?;
        self.1.segment(bytes)
    }
    fn file_begin(&mut self, name: &[u8], size: u64) -> io::Result<()> {
        self.0.file_begin(name, size)?;
        self.1.file_begin(name, size)
    }
    fn file_data(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.file_data(bytes)?;
        self.1.file_data(bytes)
    }
    fn file_from(&mut self, file: &File, offset: u64, len: u64) -> io::Result<()> {
        self.0.file_from(file, offset, len)?;
        self.1.file_from(file, offset, len)
    }
    fn file_end(&mut self) -> io::Result<()> {
        self.0.file_end()?;
        self.1.file_end()
    }
}
