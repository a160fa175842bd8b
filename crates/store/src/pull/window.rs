//! Fetching the missing chunks of a layer in stream order, a window at a time.
//!
//! Missing chunks are known up front (from the TOC and the index), so their compressed
//! ranges are merged (adjacent or separated by less than [`MERGE_GAP`]) and split into windows of about
//! [`WINDOW_BYTES`]. A thread fetches window after window (each with many ranges per
//! request and several requests in flight, see `strata-registry`) while the layer is being
//! assembled from the previous one; at most three windows are held in memory (the one being
//! replayed, one queued, one being fetched), plus a chunk larger than a window if the
//! producer made one.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

use strata_zstd_chunked::RangeSource;

/// Gaps up to this size between wanted ranges are fetched rather than split around: a
/// separate range costs a multipart part header (~100 bytes) and the registry's per-range
/// work. Measured on the debootstrap pair: 4 KiB fetched ~0.4% more than podman (which
/// merges below 1 KiB) for no gain in wall time.
pub const MERGE_GAP: u64 = 1024;
/// Compressed bytes per window.
pub const WINDOW_BYTES: u64 = 16 << 20;
/// Longest merged range: a window is cut only between merged ranges, and several ranges of
/// a window are fetched in parallel.
pub const MAX_MERGED: u64 = 4 << 20;

/// The fetched bytes of one window: merged range → bytes.
pub type Window = HashMap<u64, (Range<u64>, Vec<u8>)>;

/// Merges `wanted` ranges (non-overlapping) that are adjacent or close, up to
/// [`MAX_MERGED`] bytes per merged range (a single longer range stays whole).
pub fn merge_ranges(mut wanted: Vec<Range<u64>>) -> Vec<Range<u64>> {
    wanted.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::new();
    for r in wanted {
        match out.last_mut() {
            Some(last) if r.start <= last.end + MERGE_GAP && r.end.max(last.end) - last.start <= MAX_MERGED => {
                last.end = last.end.max(r.end)
            }
            _ => out.push(r),
        }
    }
    out
}

/// Splits merged ranges into windows of about [`WINDOW_BYTES`].
pub fn windows(merged: Vec<Range<u64>>) -> Vec<Vec<Range<u64>>> {
    let mut out = vec![Vec::new()];
    let mut size = 0;
    for r in merged {
        if size >= WINDOW_BYTES {
            out.push(Vec::new());
            size = 0;
        }
        size += r.end - r.start;
        out.last_mut().expect("non-empty").push(r);
    }
    out.retain(|w| !w.is_empty());
    out
}

/// Receives fetched windows in order; the chunk lookup is by its compressed range.
pub struct Fetcher {
    rx: Receiver<Result<Window, String>>,
    current: Window,
    /// Start offset of every merged range, ascending, with its window number.
    index: Vec<(u64, u64, usize)>,
    received: usize,
    handle: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher").field("received", &self.received).finish()
    }
}

impl Fetcher {
    /// Starts fetching `wanted` (the compressed ranges of every missing chunk) from `source`.
    pub fn start(mut source: impl RangeSource + Send + 'static, wanted: Vec<Range<u64>>) -> Fetcher {
        let wins = windows(merge_ranges(wanted));
        let mut index = Vec::new();
        for (w, rs) in wins.iter().enumerate() {
            for r in rs {
                index.push((r.start, r.end, w));
            }
        }
        let (tx, rx) = sync_channel(1);
        let handle = std::thread::spawn(move || {
            for w in wins {
                let r = source.read_ranges(&w).map(|parts| {
                    w.iter().cloned().zip(parts).map(|(range, bytes)| (range.start, (range, bytes))).collect::<Window>()
                });
                let msg = r.map_err(|e| e.to_string());
                let failed = msg.is_err();
                if tx.send(msg).is_err() || failed {
                    return;
                }
            }
        });
        Fetcher { rx, current: Window::new(), index, received: 0, handle: Some(handle) }
    }

    /// The compressed bytes of `range` (a chunk's frames), waiting for its window.
    pub fn get(&mut self, range: &Range<u64>) -> Result<Vec<u8>, String> {
        let pos = self.index.partition_point(|&(s, _, _)| s <= range.start);
        let Some(&(start, end, w)) = pos.checked_sub(1).and_then(|i| self.index.get(i)) else {
            return Err(format!("range {range:?} was never requested"));
        };
        if range.end > end {
            return Err(format!("range {range:?} is not inside a fetched range"));
        }
        while self.received <= w {
            self.current = self.rx.recv().map_err(|_| "the fetcher stopped".to_owned())??;
            self.received += 1;
        }
        let (r, bytes) = self.current.get(&start).ok_or_else(|| format!("window {w} lacks range {start}..{end}"))?;
        let from = (range.start - r.start) as usize;
        let to = (range.end - r.start) as usize;
        bytes.get(from..to).map(<[u8]>::to_vec).ok_or_else(|| format!("short answer for {range:?}"))
    }
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        // Unblock the thread (its send fails once the receiver is gone) and wait for it.
        let rx = std::mem::replace(&mut self.rx, sync_channel(0).1);
        drop(rx);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_near_ranges_and_windows_them() {
        let m = merge_ranges(vec![10..20, 0..5, 5000..6000, 20..30, 30_000..30_001]);
        assert_eq!(m, vec![0..30, 5000..6000, 30_000..30_001]);
        let big = (0..10u64).map(|i| i * (20 << 20)..i * (20 << 20) + (10 << 20)).collect();
        let w = windows(merge_ranges(big));
        assert!(w.len() >= 3 && w.iter().all(|w| !w.is_empty()));
        assert_eq!(w.iter().map(Vec::len).sum::<usize>(), 10);
    }

    #[test]
    fn merged_ranges_are_capped_but_cover_everything() {
        // 40 back-to-back 1 MiB chunks (a first pull: everything is missing).
        let wanted: Vec<_> = (0..40u64).map(|i| i << 20..(i + 1) << 20).collect();
        let m = merge_ranges(wanted);
        assert!(m.iter().all(|r| r.end - r.start <= MAX_MERGED), "{m:?}");
        assert_eq!(m.first().unwrap().start, 0);
        assert_eq!(m.last().unwrap().end, 40 << 20);
        assert!(m.windows(2).all(|p| p[0].end == p[1].start));
        assert_eq!(m.len(), 10);
        let w = windows(m);
        assert!(w.iter().all(|w| w.iter().map(|r| r.end - r.start).sum::<u64>() <= WINDOW_BYTES + MAX_MERGED));
        // A single chunk larger than the cap stays whole.
        assert_eq!(merge_ranges(vec![0..(10 << 20), (10 << 20)..(10 << 20) + 5]).len(), 2);
    }
}
