//! Chunk boundaries: FastCDC v2020 over a byte slice.
//!
//! The parameters are part of strata's on-disk and on-wire identity of chunks: changing them
//! changes every chunk digest, so they are constants, chosen by measurement
//! (see `docs/chunking.md`).

use std::ops::Range;

/// Smallest chunk FastCDC will cut (except a file's last chunk).
pub const MIN_SIZE: usize = 16 * 1024;
/// Target average chunk size.
pub const AVG_SIZE: usize = 64 * 1024;
/// Largest chunk.
pub const MAX_SIZE: usize = 256 * 1024;

/// The chunk boundaries of `data` (a whole file) as byte ranges covering it exactly, in order.
/// An empty input has no chunks.
pub fn boundaries(data: &[u8]) -> Vec<Range<usize>> {
    if data.is_empty() {
        return Vec::new();
    }
    fastcdc::v2020::FastCDC::new(data, MIN_SIZE, AVG_SIZE, MAX_SIZE).map(|c| c.offset..c.offset + c.length).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_cover_input_and_respect_limits() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let b = boundaries(&data);
        assert_eq!(b.first().unwrap().start, 0);
        assert_eq!(b.last().unwrap().end, data.len());
        for w in b.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        for r in &b[..b.len() - 1] {
            assert!(r.len() >= MIN_SIZE && r.len() <= MAX_SIZE, "{r:?}");
        }
        assert!(boundaries(&[]).is_empty());
    }
}
