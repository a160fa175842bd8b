//! The pure parts of ranged reads: cutting the wanted ranges into batches, writing `Range`
//! header values within a size budget, and slicing ranges out of a whole-blob stream.

use std::io::{self, Read};
use std::ops::Range;

/// Splits sorted ranges into contiguous batches: at most `limit` each, and at least
/// `parallel` batches when there are that many ranges, so the threads have work.
pub(crate) fn split_batches(wanted: Vec<Range<u64>>, limit: usize, parallel: usize) -> Vec<Vec<Range<u64>>> {
    let n = wanted.len();
    let count = n.div_ceil(limit.max(1)).max(parallel.min(n)).max(1);
    let (base, extra) = (n / count, n % count);
    let mut it = wanted.into_iter();
    (0..count).map(|i| it.by_ref().take(base + usize::from(i < extra)).collect()).collect()
}

/// The most bytes of `Range` header value sent: servers limit request headers (nginx 8 KiB
/// per line by default, Go 1 MiB in all), and ureq cannot send headers beyond its 128 KiB
/// output buffer.
pub(crate) const RANGE_HEADER_BUDGET: usize = 60 << 10;

/// The `Range` value for the first ranges of `batch` that fit both `limit` and the header
/// budget (at least one), and how many that is.
pub(crate) fn range_header(batch: &[Range<u64>], limit: usize) -> (String, usize) {
    let mut spec = String::from("bytes=");
    let mut n = 0;
    for r in batch.iter().take(limit.max(1)) {
        let item = format!("{}{}-{}", if n == 0 { "" } else { "," }, r.start, r.end - 1);
        if n > 0 && spec.len() + item.len() > RANGE_HEADER_BUDGET {
            break;
        }
        spec.push_str(&item);
        n += 1;
    }
    (spec, n)
}

/// The most a buffer reserves before bytes arrive. Lengths come from requests and from a
/// server's `Content-Range`; reserving them outright would make a claim cost memory before
/// a byte of it was sent (and an absurd one abort the process). Past this, a buffer grows
/// with the bytes that really arrive.
pub(crate) const MAX_RESERVATION: u64 = 1 << 20;

/// An empty buffer for `len` bytes still to come, reserving at most [`MAX_RESERVATION`].
pub(crate) fn buffer_for(len: u64) -> Vec<u8> {
    Vec::with_capacity(len.min(MAX_RESERVATION) as usize)
}

pub(crate) enum SliceError<E> {
    Io(io::Error),
    Short { at: u64, range: Range<u64> },
    Sink(E),
}

/// Cuts `wanted` (sorted by start; may overlap) out of a stream of the whole blob. Only the
/// ranges in progress are held in memory; reading stops after the last one ends.
pub(crate) fn slice_stream<E>(
    mut body: impl Read,
    wanted: &[Range<u64>],
    mut emit: impl FnMut(Range<u64>, Vec<u8>) -> std::result::Result<(), E>,
) -> std::result::Result<(), SliceError<E>> {
    let mut buf = vec![0u8; 64 << 10];
    let (mut next, mut offset) = (0usize, 0u64);
    let mut active: Vec<(Range<u64>, Vec<u8>)> = Vec::new();
    while next < wanted.len() || !active.is_empty() {
        let n = match body.read(&mut buf) {
            Ok(0) => {
                let range = active.first().map(|(r, _)| r.clone()).unwrap_or_else(|| wanted[next].clone());
                return Err(SliceError::Short { at: offset, range });
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SliceError::Io(e)),
        };
        let chunk_end = offset + n as u64;
        while next < wanted.len() && wanted[next].start < chunk_end {
            let r = wanted[next].clone();
            active.push((r.clone(), buffer_for(r.end - r.start)));
            next += 1;
        }
        let mut i = 0;
        while i < active.len() {
            let (r, v) = &mut active[i];
            // Ranges start no earlier than the chunk they were activated in, so the next
            // byte a range needs is never behind `offset`.
            let from = r.start + v.len() as u64;
            let to = r.end.min(chunk_end);
            if from < to {
                v.extend_from_slice(&buf[(from - offset) as usize..(to - offset) as usize]);
            }
            if v.len() as u64 == r.end - r.start {
                let (r, v) = active.swap_remove(i);
                emit(r, v).map_err(SliceError::Sink)?;
            } else {
                i += 1;
            }
        }
        offset = chunk_end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_reserve_little_before_bytes_arrive() {
        assert_eq!(buffer_for(10).capacity(), 10);
        let b = buffer_for(10_000_000_000_000);
        assert!(b.capacity() as u64 >= MAX_RESERVATION && (b.capacity() as u64) < 2 * MAX_RESERVATION);
    }

    #[test]
    fn batches_respect_the_limit_and_feed_every_thread() {
        let r = |n: u64| (0..n).map(|i| i * 10..i * 10 + 5).collect::<Vec<_>>();
        let sizes = |b: &Vec<Vec<Range<u64>>>| b.iter().map(Vec::len).collect::<Vec<_>>();
        assert_eq!(sizes(&split_batches(r(10), 100, 4)), [3, 3, 2, 2]);
        assert_eq!(sizes(&split_batches(r(250), 100, 1)), [84, 83, 83]);
        assert_eq!(sizes(&split_batches(r(2), 100, 4)), [1, 1]);
        let b = split_batches(r(7), 3, 2);
        assert!(b.iter().all(|x| x.len() <= 3));
        assert_eq!(b.concat(), r(7));
    }

    #[test]
    fn range_headers_respect_count_and_byte_budget() {
        assert_eq!(range_header(&[0..10, 20..21, 30..40], 2), ("bytes=0-9,20-20".to_owned(), 2));
        let many: Vec<Range<u64>> = (0..100_000u64).map(|i| i * 1_000_000..i * 1_000_000 + 5).collect();
        let (spec, n) = range_header(&many, usize::MAX);
        assert!(spec.len() <= RANGE_HEADER_BUDGET && n > 1000 && n < many.len(), "{n}");
        assert_eq!(spec.matches(',').count() + 1, n);
        // One range always goes out, however long.
        let huge = u64::MAX - 10..u64::MAX;
        assert_eq!(range_header(std::slice::from_ref(&huge), 0).1, 1);
    }

    #[test]
    fn slices_overlapping_ranges_from_a_stream_and_stops_early() {
        let blob: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let wanted = vec![0..1, 5..70_000, 60_000..60_010, 69_999..140_000, 140_000..140_001];
        // A reader that counts how far it was read.
        struct Track<'a>(&'a [u8], usize);
        impl Read for Track<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(self.0.len() - self.1).min(10_000);
                buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
                self.1 += n;
                Ok(n)
            }
        }
        let mut t = Track(&blob, 0);
        let mut got = Vec::new();
        let r: std::result::Result<(), SliceError<()>> = slice_stream(&mut t, &wanted, |r, d| {
            got.push((r, d));
            Ok(())
        });
        assert!(r.is_ok());
        got.sort_by_key(|(r, _)| (r.start, r.end));
        assert_eq!(got.len(), wanted.len());
        for (r, d) in got {
            assert_eq!(d, &blob[r.start as usize..r.end as usize], "{r:?}");
        }
        assert!(t.1 <= 150_000, "read {} bytes of 300000", t.1);
        // A blob that ends too soon is reported with the range that was cut.
        let cut = 50..200;
        let r = slice_stream(&blob[..100], std::slice::from_ref(&cut), |_, _| Ok::<(), ()>(()));
        assert!(matches!(r, Err(SliceError::Short { at: 100, range }) if range == (50..200)));
    }
}
