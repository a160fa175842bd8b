//! The tar-split of the stream being written, recorded by `strata_layer::tarsplit` straight
//! into a zstd encoder held in memory (compressed tar-splits are ~3% of the tar).

use std::io::{self, Write};

use strata_layer::TarOut;
use strata_layer::tarsplit::TarSplitRecorder;

type Encoder = zstd::stream::write::Encoder<'static, Vec<u8>>;

/// Counts the uncompressed bytes going into the encoder.
struct Counting {
    enc: Encoder,
    count: u64,
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.enc.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.enc.flush()
    }
}

/// A `TarOut` recording tar-split records into a compressed buffer.
pub(crate) struct TarSplitSink(TarSplitRecorder<Counting>);

impl std::fmt::Debug for TarSplitSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl TarSplitSink {
    pub fn new(level: i32) -> io::Result<Self> {
        Ok(TarSplitSink(TarSplitRecorder::new(Counting { enc: Encoder::new(Vec::new(), level)?, count: 0 })))
    }

    /// The compressed tar-split and its uncompressed length.
    pub fn finish(self) -> io::Result<(Vec<u8>, u64)> {
        let counting = self.0.finish()?;
        Ok((counting.enc.finish()?, counting.count))
    }
}

impl TarOut for TarSplitSink {
    fn segment(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.segment(bytes)
    }
    fn file_begin(&mut self, name: &[u8], size: u64) -> io::Result<()> {
        self.0.file_begin(name, size)
    }
    fn file_data(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.file_data(bytes)
    }
    fn file_end(&mut self) -> io::Result<()> {
        self.0.file_end()
    }
}
