//! zstd compression on all cores: the input is cut into blocks, each compressed as an
//! independent zstd frame on rayon's pool, and the frames are written in input order.
//!
//! Concatenated zstd frames are one valid zstd stream (every decoder reads on to the next
//! frame), so the output decompresses to exactly the input. At most `max_in_flight` blocks
//! are buffered or compressing at a time, which bounds memory to about
//! `max_in_flight * block_size * 2`.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc;

/// Default block size: 4 MiB.
pub const DEFAULT_BLOCK_SIZE: usize = 4 << 20;

/// A `Write` that zstd-compresses in parallel; call [`ParallelZstdWriter::finish`] at the end.
pub struct ParallelZstdWriter<W: Write> {
    inner: Option<W>,
    level: i32,
    block_size: usize,
    max_in_flight: usize,
    buf: Vec<u8>,
    pending: VecDeque<mpsc::Receiver<io::Result<Vec<u8>>>>,
    bytes_in: u64,
    bytes_out: u64,
}

impl<W: Write> std::fmt::Debug for ParallelZstdWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParallelZstdWriter")
            .field("level", &self.level)
            .field("block_size", &self.block_size)
            .field("in_flight", &self.pending.len())
            .field("bytes_in", &self.bytes_in)
            .field("bytes_out", &self.bytes_out)
            .finish()
    }
}

impl<W: Write> ParallelZstdWriter<W> {
    /// Compresses at `level` in [`DEFAULT_BLOCK_SIZE`] blocks, two per rayon thread in flight.
    pub fn new(inner: W, level: i32) -> Self {
        Self::with_block_size(inner, level, DEFAULT_BLOCK_SIZE, 2 * rayon::current_num_threads().max(1))
    }

    pub fn with_block_size(inner: W, level: i32, block_size: usize, max_in_flight: usize) -> Self {
        let block_size = block_size.max(1);
        ParallelZstdWriter {
            inner: Some(inner),
            level,
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
        let level = self.level;
        let (tx, rx) = mpsc::sync_channel(1);
        rayon::spawn(move || {
            let frame = compress_frame(&block, level);
            let _ = tx.send(frame);
        });
        self.pending.push_back(rx);
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(rx) = self.pending.pop_front() else { return Ok(()) };
        let frame = rx.recv().map_err(|_| io::Error::other("a zstd compression task panicked"))??;
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
    /// An empty input still produces one (empty) frame, so the output is a valid zstd stream.
    pub fn finish(mut self) -> io::Result<W> {
        self.drain()?;
        let mut inner = self.inner.take().expect("finish called once");
        if self.bytes_out == 0 {
            let frame = compress_frame(&[], self.level)?;
            inner.write_all(&frame)?;
            self.bytes_out += frame.len() as u64;
        }
        inner.flush()?;
        Ok(inner)
    }
}

fn compress_frame(block: &[u8], level: i32) -> io::Result<Vec<u8>> {
    let mut c = zstd::bulk::Compressor::new(level)?;
    c.include_checksum(true)?;
    c.include_contentsize(true)?;
    c.compress(block)
}

impl<W: Write> Write for ParallelZstdWriter<W> {
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
            let mut w = ParallelZstdWriter::with_block_size(Vec::new(), 3, block, 3);
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
        let mut w = ParallelZstdWriter::with_block_size(Broken, 1, 10, 1);
        let r = w.write_all(&[1u8; 100]).and_then(|_| w.finish().map(|_| ()));
        assert!(r.unwrap_err().to_string().contains("disk full"));
    }
}
