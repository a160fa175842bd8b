//! zstd decompression that cannot be turned into a memory or CPU bomb.
//!
//! Every payload this crate decompresses has a length declared in advance (the annotations'
//! uncompressed lengths, a chunk's size). Decompression stops one byte past the declared
//! length, so a payload that inflates further is rejected after doing bounded work, and the
//! decoder's window is capped so a frame header cannot make it allocate more than
//! [`MAX_WINDOW_LOG`] bytes of history.

use std::io::{self, Read};

/// Largest zstd window accepted: 2^27 = 128 MiB, libzstd's default limit for streaming
/// decoders (and far above the 8 MiB containers/storage's encoder uses).
pub const MAX_WINDOW_LOG: u32 = 27;

/// Why a payload could not be decompressed.
#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    #[error("{what}: declared uncompressed length {declared} exceeds the limit of {limit} bytes")]
    TooLarge { what: String, declared: u64, limit: u64 },
    #[error("{what}: decompresses to {found} bytes, but {declared} were declared")]
    Length { what: String, declared: u64, found: String },
    #[error("{what}: not valid zstd: {source}")]
    Zstd { what: String, source: io::Error },
}

/// A streaming decoder over `compressed` that yields at most `limit` bytes and fails
/// (instead of ending) if the data would go on.
pub fn decoder<'a>(compressed: &'a [u8], what: &str, limit: u64) -> Result<BoundedReader<'a>, DecompressError> {
    let mut dec = zstd::stream::read::Decoder::with_buffer(compressed)
        .map_err(|source| DecompressError::Zstd { what: what.to_owned(), source })?;
    dec.window_log_max(MAX_WINDOW_LOG).map_err(|source| DecompressError::Zstd { what: what.to_owned(), source })?;
    Ok(BoundedReader { inner: dec, remaining: limit, limit, what: what.to_owned() })
}

/// See [`decoder`].
pub struct BoundedReader<'a> {
    inner: zstd::stream::read::Decoder<'a, &'a [u8]>,
    remaining: u64,
    limit: u64,
    what: String,
}

impl std::fmt::Debug for BoundedReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedReader").field("what", &self.what).field("remaining", &self.remaining).finish()
    }
}

impl Read for BoundedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.remaining == 0 {
            // Probe one byte: more data past the limit is an error, not an EOF.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: decompresses to more than {} bytes", self.what, self.limit),
                )),
            };
        }
        let cap = buf.len().min(self.remaining.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..cap])?;
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Decompresses `compressed`, which must inflate to exactly `declared` bytes, refusing
/// declarations above `limit`. Memory grows with the real output, not with the declaration.
pub fn decompress_exact(compressed: &[u8], declared: u64, limit: u64, what: &str) -> Result<Vec<u8>, DecompressError> {
    if declared > limit {
        return Err(DecompressError::TooLarge { what: what.to_owned(), declared, limit });
    }
    let mut r = decoder(compressed, what, declared)?;
    let mut out = Vec::with_capacity(declared.min(1 << 20) as usize);
    match r.read_to_end(&mut out) {
        Ok(_) if out.len() as u64 == declared => Ok(out),
        Ok(_) => Err(DecompressError::Length { what: what.to_owned(), declared, found: out.len().to_string() }),
        Err(e) if e.kind() == io::ErrorKind::InvalidData && e.to_string().contains("decompresses to more") => {
            Err(DecompressError::Length { what: what.to_owned(), declared, found: format!("more than {declared}") })
        }
        Err(source) => Err(DecompressError::Zstd { what: what.to_owned(), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_lengths_only() {
        let data = vec![7u8; 100_000];
        let z = zstd::bulk::compress(&data, 3).unwrap();
        assert_eq!(decompress_exact(&z, 100_000, 1 << 20, "t").unwrap(), data);
        assert!(matches!(decompress_exact(&z, 99_999, 1 << 20, "t"), Err(DecompressError::Length { .. })));
        assert!(matches!(decompress_exact(&z, 100_001, 1 << 20, "t"), Err(DecompressError::Length { .. })));
        assert!(matches!(decompress_exact(&z, 100_000, 1000, "t"), Err(DecompressError::TooLarge { .. })));
        assert!(matches!(decompress_exact(b"not zstd", 3, 10, "t"), Err(DecompressError::Zstd { .. })));
    }

    #[test]
    fn a_bomb_is_stopped_after_bounded_output() {
        // 1 GiB of zeros compresses to ~32 KiB; declaring 1 MiB must fail fast, not inflate it.
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        let block = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            std::io::Write::write_all(&mut enc, &block).unwrap();
        }
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 1 << 20);
        let t = std::time::Instant::now();
        let err = decompress_exact(&bomb, 1 << 20, 1 << 20, "bomb").unwrap_err();
        assert!(matches!(err, DecompressError::Length { .. }), "{err}");
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn oversized_windows_are_refused() {
        // A frame that declares a 1 GiB window (no content size) is refused before allocating.
        let data = vec![1u8; 1000];
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        enc.set_parameter(zstd::zstd_safe::CParameter::WindowLog(30)).unwrap();
        enc.set_pledged_src_size(None).unwrap();
        std::io::Write::write_all(&mut enc, &data).unwrap();
        let z = enc.finish().unwrap();
        assert!(matches!(decompress_exact(&z, 1000, 1 << 20, "w"), Err(DecompressError::Zstd { .. })));
    }
}
