//! zstd or gzip compression on all cores: the input is cut into blocks, each compressed as
//! an independent zstd frame or gzip member on rayon's pool, and written in input order.
//!
//! Concatenated zstd frames are one valid zstd stream, and concatenated gzip members one
//! valid gzip file (RFC 1952 §2.2; every decoder, Go's included, reads on to the next
//! member), so the output decompresses to exactly the input. At most `max_in_flight` blocks
//! are buffered or compressing at a time, which bounds memory to about
//! `max_in_flight * block_size * 2`.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc;

/// Default block size: 4 MiB.
pub const DEFAULT_BLOCK_SIZE: usize = 4 << 20;

/// The compression of each block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// A zstd frame at this level, with a checksum and the content size.
    Zstd(i32),
    /// A gzip member at this level (0-9).
    Gzip(u32),
}

/// A `Write` that compresses in parallel; call [`ParallelWriter::finish`] at the end.
pub struct ParallelWriter<W: Write> {
    inner: Option<W>,
    codec: Codec,
    block_size: usize,
    max_in_flight: usize,
    buf: Vec<u8>,
    pending: VecDeque<mpsc::Receiver<io::Result<Vec<u8>>>>,
    bytes_in: u64,
    bytes_out: u64,
}

impl<W: Write> std::fmt::Debug for ParallelWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParallelWriter")
            .field("codec", &self.codec)
            .field("block_size", &self.block_size)
            .field("in_flight", &self.pending.len())
            .field("bytes_in", &self.bytes_in)
            .field("bytes_out", &self.bytes_out)
            .finish()
    }
}

impl<W: Write> ParallelWriter<W> {
    /// Compresses with `codec` in [`DEFAULT_BLOCK_SIZE`] blocks, two per rayon thread in flight.
    pub fn new(inner: W, codec: Codec) -> Self {
        Self::with_block_size(inner, codec, DEFAULT_BLOCK_SIZE, 2 * rayon::current_num_threads().max(1))
    }

    pub fn with_block_size(inner: W, codec: Codec, block_size: usize, max_in_flight: usize) -> Self {
        let block_size = block_size.max(1);
        ParallelWriter {
            inner: Some(inner),
            codec,
            block_size,
            max_in_flight: max_in_flight.max(1),
            buf: Vec::with_capacity(block_size),
            pending: VecDeque::new(),
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    /// Uncompressed bytes accepted so far.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in
    }

    /// Compressed bytes written to the inner writer so far.
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out
    }

    fn submit_block(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        while self.pending.len() >= self.max_in_flight {
            self.write_oldest()?;
        }
        let block = std::mem::replace(&mut self.buf, Vec::with_capacity(self.block_size));
        let codec = self.codec;
        let (tx, rx) = mpsc::sync_channel(1);
        rayon::spawn(move || {
            let frame = compress_block(&block, codec);
            let _ = tx.send(frame);
        });
        self.pending.push_back(rx);
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(rx) = self.pending.pop_front() else { return Ok(()) };
        let frame = rx.recv().map_err(|_| io::Error::other("a compression task panicked"))??;
        let inner = self.inner.as_mut().expect("writer used after finish");
        inner.write_all(&frame)?;
        self.bytes_out += frame.len() as u64;
        Ok(())
    }

    fn drain(&mut self) -> io::Result<()> {
        self.submit_block()?;
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        Ok(())
    }

    /// Compresses what is buffered, writes every frame, flushes and returns the writer.
    /// An empty input still produces one (empty) frame or member, so the output is valid.
    pub fn finish(mut self) -> io::Result<W> {
        self.drain()?;
        let mut inner = self.inner.take().expect("finish called once");
        if self.bytes_out == 0 {
            let frame = compress_block(&[], self.codec)?;
            inner.write_all(&frame)?;
            self.bytes_out += frame.len() as u64;
        }
        inner.flush()?;
        Ok(inner)
    }
}

fn compress_block(block: &[u8], codec: Codec) -> io::Result<Vec<u8>> {
    match codec {
        Codec::Zstd(level) => {
            let mut c = zstd::bulk::Compressor::new(level)?;
            c.include_checksum(true)?;
            c.include_contentsize(true)?;
            c.compress(block)
        }
        Codec::Gzip(level) => {
            let out = Vec::with_capacity(block.len() / 2 + 64);
            let mut e = flate2::write::GzEncoder::new(out, flate2::Compression::new(level.min(9)));
            e.write_all(block)?;
            e.finish()
        }
    }
}

impl<W: Write> Write for ParallelWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.block_size - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        self.bytes_in += n as u64;
        if self.buf.len() == self.block_size {
            self.submit_block()?;
        }
        Ok(n)
    }

    /// Ends the current block early (a short frame) and writes every pending frame.
    fn flush(&mut self) -> io::Result<()> {
        self.drain()?;
        self.inner.as_mut().expect("writer used after finish").flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<u8> {
        let mut x = 0x9e3779b97f4a7c15u64;
        (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if i % 3 == 0 { (x % 7) as u8 } else { b"strata layer "[i % 13] }
            })
            .collect()
    }

    #[test]
    fn frames_concatenate_to_the_input() {
        for (len, block) in
            [(0usize, 1000usize), (1, 1000), (999, 1000), (1000, 1000), (123_457, 1000), (3 << 20, 1 << 20)]
        {
            let data = sample(len);
            let mut w = ParallelWriter::with_block_size(Vec::new(), Codec::Zstd(3), block, 3);
            for piece in data.chunks(777) {
                w.write_all(piece).unwrap();
            }
            assert_eq!(w.bytes_in(), len as u64);
            let out = w.finish().unwrap();
            let back = zstd::stream::decode_all(&out[..]).unwrap();
            assert_eq!(back, data, "length {len} block {block}");
            // One frame per block: frames are independent.
            let frames = count_frames(&out);
            assert_eq!(frames, len.div_ceil(block).max(1), "length {len} block {block}");
        }
    }

    fn count_frames(mut buf: &[u8]) -> usize {
        let mut n = 0;
        while !buf.is_empty() {
            let size = zstd::zstd_safe::find_frame_compressed_size(buf).unwrap();
            buf = &buf[size..];
            n += 1;
        }
        n
    }

    #[test]
    fn gzip_members_concatenate_to_the_input() {
        for (len, block) in [(0usize, 1000usize), (1, 1000), (1000, 1000), (123_457, 1000), (3 << 20, 1 << 20)] {
            let data = sample(len);
            let mut w = ParallelWriter::with_block_size(Vec::new(), Codec::Gzip(6), block, 3);
            for piece in data.chunks(777) {
                w.write_all(piece).unwrap();
            }
            let out = w.finish().unwrap();
            // MultiGzDecoder reads every member; a single-member decoder stops after the first.
            let mut back = Vec::new();
            io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&out[..]), &mut back).unwrap();
            assert_eq!(back, data, "length {len} block {block}");
            let members = out.windows(3).filter(|w| w == &[0x1f, 0x8b, 8]).count();
            assert!(members >= len.div_ceil(block).max(1), "length {len} block {block}: {members} members");
            // GNU gzip reads the concatenation as one file too.
            if len == 123_457 {
                let mut child = std::process::Command::new("gzip")
                    .arg("-dc")
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                let mut stdin = child.stdin.take().unwrap();
                let input = out.clone();
                let feeder = std::thread::spawn(move || stdin.write_all(&input));
                let o = child.wait_with_output().unwrap();
                feeder.join().unwrap().unwrap();
                assert!(o.status.success());
                assert_eq!(o.stdout, data);
            }
        }
    }

    #[test]
    fn write_errors_of_the_inner_writer_surface() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = ParallelWriter::with_block_size(Broken, Codec::Zstd(1), 10, 1);
        let r = w.write_all(&[1u8; 100]).and_then(|_| w.finish().map(|_| ()));
        assert!(r.unwrap_err().to_string().contains("disk full"));
    }
}
