//! Parallel frame compression with in-order delivery and a bounded window.
//!
//! Frames are compressed on the rayon pool; [`Pipeline`] keeps them (and entry markers) in
//! submission order and hands finished items back in that order, so the writer can emit
//! bytes and compute offsets sequentially. The bytes held by queued items are bounded:
//! submitting past the bound first waits for the oldest items.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::ops::Range;
use std::sync::{Arc, mpsc};

use strata_types::{Blake3Digest, Sha256Digest};

/// A chunk of file content to compress as its own frame: `range` of a shared buffer.
#[derive(Debug)]
pub(crate) struct ChunkInput {
    pub file_offset: u64,
    pub buffer: Arc<Vec<u8>>,
    pub range: Range<usize>,
    /// Smallest all-zero chunk marked as `zeros`.
    pub zeros_min: usize,
}

/// What the workers computed for a chunk.
#[derive(Clone, Debug)]
pub(crate) struct ChunkDone {
    pub file_offset: u64,
    pub len: u64,
    pub sha256: Sha256Digest,
    pub blake3: Blake3Digest,
    pub zeros: bool,
}

/// A compressed frame, with its chunk's facts when it is file content.
#[derive(Debug)]
pub(crate) struct FrameDone {
    pub bytes: Vec<u8>,
    pub chunk: Option<ChunkDone>,
}

/// An item delivered back in order.
#[derive(Debug)]
pub(crate) enum Done<M> {
    Frame(FrameDone),
    /// The sha256 of a whole file, computed on a worker.
    FileDigest(Sha256Digest),
    Marker(M),
}

/// What a worker sends back.
#[derive(Debug)]
enum Work {
    Frame(FrameDone),
    Digest(Sha256Digest),
}

#[derive(Debug)]
enum Slot<M> {
    Job { rx: mpsc::Receiver<io::Result<Work>>, held: usize },
    Marker(M),
}

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
}

/// One zstd frame (with the content size in its header, no checksum) of `data`.
pub(crate) fn compress_frame(level: i32, data: &[u8]) -> io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        let (_, c) = slot.as_mut().expect("just set");
        c.compress(data)
    })
}

fn run_chunk(level: i32, input: ChunkInput) -> io::Result<Work> {
    let data = &input.buffer[input.range.clone()];
    let zeros = data.len() >= input.zeros_min && data.iter().all(|&b| b == 0);
    let chunk = ChunkDone {
        file_offset: input.file_offset,
        len: data.len() as u64,
        sha256: Sha256Digest::of(data),
        blake3: Blake3Digest::of(data),
        zeros,
    };
    Ok(Work::Frame(FrameDone { bytes: compress_frame(level, data)?, chunk: Some(chunk) }))
}

/// The ordered queue of frames being compressed and markers waiting behind them.
#[derive(Debug)]
pub(crate) struct Pipeline<M> {
    level: i32,
    queue: VecDeque<Slot<M>>,
    held: usize,
    max_held: usize,
}

impl<M> Pipeline<M> {
    pub fn new(level: i32, max_held: usize) -> Self {
        Pipeline { level, queue: VecDeque::new(), held: 0, max_held: max_held.max(1) }
    }

    /// Bytes of uncompressed input held by queued frames.
    pub fn held(&self) -> usize {
        self.held
    }

    /// True when the window is full and the oldest item must be taken before submitting.
    pub fn is_full(&self) -> bool {
        self.held >= self.max_held
    }

    fn spawn(&mut self, held: usize, job: impl FnOnce() -> io::Result<Work> + Send + 'static) {
        let (tx, rx) = mpsc::sync_channel(1);
        rayon::spawn(move || {
            let _ = tx.send(job());
        });
        self.held += held;
        self.queue.push_back(Slot::Job { rx, held });
    }

    /// Queues metadata bytes as a frame.
    pub fn submit_metadata(&mut self, data: Vec<u8>) {
        let level = self.level;
        let held = data.len();
        self.spawn(held, move || Ok(Work::Frame(FrameDone { bytes: compress_frame(level, &data)?, chunk: None })));
    }

    /// Queues a chunk of file content as a frame.
    pub fn submit_chunk(&mut self, input: ChunkInput) {
        let level = self.level;
        let held = input.range.len();
        self.spawn(held, move || run_chunk(level, input));
    }

    /// Queues the sha256 of a whole file held in `buffer`.
    pub fn submit_file_digest(&mut self, buffer: Arc<Vec<u8>>) {
        self.spawn(0, move || Ok(Work::Digest(Sha256Digest::of(&buffer))));
    }

    /// Queues a marker, delivered after every frame submitted before it.
    pub fn submit_marker(&mut self, marker: M) {
        self.queue.push_back(Slot::Marker(marker));
    }

    /// The oldest item, waiting for it if `wait`; `None` when empty (or not ready).
    pub fn next(&mut self, wait: bool) -> Option<io::Result<Done<M>>> {
        let ready = match self.queue.front()? {
            Slot::Marker(_) => true,
            Slot::Job { .. } if wait => true,
            Slot::Job { rx, .. } => {
                // A finished job has sent its one message.
                match rx.try_recv() {
                    Ok(r) => {
                        let Some(Slot::Job { held, .. }) = self.queue.pop_front() else { unreachable!() };
                        self.held -= held;
                        return Some(r.map(Self::done));
                    }
                    Err(_) => false,
                }
            }
        };
        if !ready {
            return None;
        }
        Some(match self.queue.pop_front().expect("front exists") {
            Slot::Marker(m) => Ok(Done::Marker(m)),
            Slot::Job { rx, held } => {
                self.held -= held;
                match rx.recv() {
                    Ok(r) => r.map(Self::done),
                    Err(_) => Err(io::Error::other("a compression worker panicked")),
                }
            }
        })
    }

    fn done(w: Work) -> Done<M> {
        match w {
            Work::Frame(f) => Done::Frame(f),
            Work::Digest(d) => Done::FileDigest(d),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_in_submission_order_within_the_window() {
        let mut p: Pipeline<usize> = Pipeline::new(3, 1 << 20);
        let mut expected = Vec::new();
        for i in 0..50usize {
            let data: Vec<u8> = (0..(i * 997 % 70_000)).map(|j| (j * i) as u8).collect();
            expected.push(data.clone());
            if i % 2 == 0 {
                p.submit_metadata(data);
            } else {
                let range = 0..data.len();
                p.submit_chunk(ChunkInput { file_offset: i as u64, buffer: Arc::new(data), range, zeros_min: 1024 });
            }
            p.submit_marker(i);
        }
        for (i, want) in expected.iter().enumerate() {
            let Done::Frame(f) = p.next(true).unwrap().unwrap() else { panic!("frame expected") };
            assert_eq!(&zstd::bulk::decompress(&f.bytes, 1 << 20).unwrap(), want);
            if let Some(c) = f.chunk {
                assert_eq!(c.sha256, Sha256Digest::of(want));
                assert_eq!((c.file_offset, c.len), (i as u64, want.len() as u64));
            }
            let Done::Marker(m) = p.next(true).unwrap().unwrap() else { panic!("marker expected") };
            assert_eq!(m, i);
        }
        assert!(p.next(true).is_none());
        assert_eq!(p.held(), 0);
    }

    #[test]
    fn zero_chunks_are_flagged_above_the_threshold_only() {
        let mut p: Pipeline<()> = Pipeline::new(3, 1 << 20);
        for (len, min) in [(4096, 1024), (512, 1024)] {
            p.submit_chunk(ChunkInput {
                file_offset: 0,
                buffer: Arc::new(vec![0; len]),
                range: 0..len,
                zeros_min: min,
            });
        }
        let flags: Vec<bool> = (0..2)
            .map(|_| match p.next(true).unwrap().unwrap() {
                Done::Frame(f) => f.chunk.unwrap().zeros,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(flags, [true, false]);
    }
}
