//! zstd skippable frames and the zstd:chunked footer.
//!
//! A skippable frame is `50 2A 4D 18`, a u32 little-endian payload length, then the payload;
//! every zstd decoder skips it, so metadata can ride inside a blob whose decompression is still
//! exactly the layer tar. The footer is the blob's last frame: a skippable frame whose 64-byte
//! payload locates the TOC and the tar-split (see `docs/zstd-chunked.md`).

/// Magic of the skippable frame variant containers/storage uses (first of the 16 variants).
pub const SKIPPABLE_MAGIC: [u8; 4] = [0x50, 0x2a, 0x4d, 0x18];
/// Bytes before a skippable frame's payload: magic plus length.
pub const SKIPPABLE_HEADER_LEN: u64 = 8;
/// Last eight bytes of the footer payload: "GNUlInUx".
pub const FOOTER_MAGIC: [u8; 8] = *b"GNUlInUx";
/// Length of the footer payload.
pub const FOOTER_PAYLOAD_LEN: usize = 64;
/// Length of the whole footer frame at the end of a blob.
pub const FOOTER_FRAME_LEN: usize = FOOTER_PAYLOAD_LEN + SKIPPABLE_HEADER_LEN as usize;
/// The only manifest (TOC) type: 1, "CRFS-compatible" JSON.
pub const MANIFEST_TYPE_CRFS: u64 = 1;

/// Why a frame or footer could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("expected a zstd skippable frame, found magic {found:02x?}")]
    NotSkippable { found: Vec<u8> },
    #[error("skippable frame is truncated: needs {needed} bytes, {available} available")]
    Truncated { needed: u64, available: u64 },
    #[error("skippable frame payload of {0} bytes does not fit a u32 length")]
    PayloadTooLarge(usize),
    #[error("zstd:chunked footer payload is {0} bytes, expected 64")]
    FooterLength(u64),
    #[error("zstd:chunked footer magic is {found:02x?}, expected \"GNUlInUx\"")]
    FooterMagic { found: Vec<u8> },
}

/// The header of a skippable frame holding `payload_len` bytes.
pub fn skippable_header(payload_len: usize) -> Result<[u8; 8], FrameError> {
    let len = u32::try_from(payload_len).map_err(|_| FrameError::PayloadTooLarge(payload_len))?;
    let mut h = [0u8; 8];
    h[..4].copy_from_slice(&SKIPPABLE_MAGIC);
    h[4..].copy_from_slice(&len.to_le_bytes());
    Ok(h)
}

/// A whole skippable frame around `payload`.
pub fn encode_skippable(payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&skippable_header(payload.len())?);
    out.extend_from_slice(payload);
    Ok(out)
}

/// Decodes the skippable frame at the start of `bytes`: returns its payload and the total
/// frame length. Any of the 16 skippable magics (`5? 2A 4D 18`) is accepted, as zstd does.
pub fn decode_skippable(bytes: &[u8]) -> Result<(&[u8], usize), FrameError> {
    if bytes.len() < 8 {
        return Err(FrameError::Truncated { needed: 8, available: bytes.len() as u64 });
    }
    if bytes[0] & 0xf0 != 0x50 || bytes[1..4] != SKIPPABLE_MAGIC[1..] {
        return Err(FrameError::NotSkippable { found: bytes[..4].to_vec() });
    }
    let len = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes")) as usize;
    let end = 8 + len;
    if bytes.len() < end {
        return Err(FrameError::Truncated { needed: end as u64, available: bytes.len() as u64 });
    }
    Ok((&bytes[8..end], end))
}

/// The footer's fields. Offsets point at the compressed payloads (after each skippable
/// frame's 8-byte header), lengths are in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Footer {
    pub toc_offset: u64,
    pub toc_length: u64,
    pub toc_uncompressed_length: u64,
    pub manifest_type: u64,
    pub tar_split_offset: u64,
    pub tar_split_length: u64,
    pub tar_split_uncompressed_length: u64,
}

impl Footer {
    /// The 64-byte footer payload: seven u64 LE fields, then the magic.
    pub fn payload(&self) -> [u8; FOOTER_PAYLOAD_LEN] {
        let mut out = [0u8; FOOTER_PAYLOAD_LEN];
        let fields = [
            self.toc_offset,
            self.toc_length,
            self.toc_uncompressed_length,
            self.manifest_type,
            self.tar_split_offset,
            self.tar_split_length,
            self.tar_split_uncompressed_length,
        ];
        for (i, v) in fields.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        out[56..].copy_from_slice(&FOOTER_MAGIC);
        out
    }

    /// The footer as the skippable frame that ends a blob.
    pub fn encode(&self) -> [u8; FOOTER_FRAME_LEN] {
        let mut out = [0u8; FOOTER_FRAME_LEN];
        out[..8].copy_from_slice(&skippable_header(FOOTER_PAYLOAD_LEN).expect("64 fits u32"));
        out[8..].copy_from_slice(&self.payload());
        out
    }

    /// Decodes the footer frame: `tail` is the last [`FOOTER_FRAME_LEN`] bytes of a blob.
    pub fn decode(tail: &[u8]) -> Result<Footer, FrameError> {
        let (payload, _) = decode_skippable(tail)?;
        if payload.len() != FOOTER_PAYLOAD_LEN {
            return Err(FrameError::FooterLength(payload.len() as u64));
        }
        if payload[56..] != FOOTER_MAGIC {
            return Err(FrameError::FooterMagic { found: payload[56..].to_vec() });
        }
        let field = |i: usize| u64::from_le_bytes(payload[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        Ok(Footer {
            toc_offset: field(0),
            toc_length: field(1),
            toc_uncompressed_length: field(2),
            manifest_type: field(3),
            tar_split_offset: field(4),
            tar_split_length: field(5),
            tar_split_uncompressed_length: field(6),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footer_layout_is_seven_le_u64_then_magic() {
        let f = Footer {
            toc_offset: 0x0102,
            toc_length: 3,
            toc_uncompressed_length: 4,
            manifest_type: 1,
            tar_split_offset: 5,
            tar_split_length: 6,
            tar_split_uncompressed_length: 7,
        };
        let frame = f.encode();
        assert_eq!(&frame[..8], &[0x50, 0x2a, 0x4d, 0x18, 64, 0, 0, 0]);
        assert_eq!(&frame[8..16], &[0x02, 0x01, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&frame[8 + 24..8 + 32], &1u64.to_le_bytes());
        assert_eq!(&frame[64..], b"GNUlInUx");
        assert_eq!(Footer::decode(&frame).unwrap(), f);
    }

    #[test]
    fn bad_footers_are_named() {
        let mut frame = Footer::default().encode();
        frame[70] = b'X';
        assert!(matches!(Footer::decode(&frame), Err(FrameError::FooterMagic { .. })));
        let short = encode_skippable(&[0u8; 16]).unwrap();
        assert_eq!(Footer::decode(&short), Err(FrameError::FooterLength(16)));
        assert!(matches!(Footer::decode(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0]), Err(FrameError::NotSkippable { .. })));
        assert!(matches!(Footer::decode(&frame[..20]), Err(FrameError::Truncated { .. })));
    }

    #[test]
    fn skippable_frames_are_skipped_by_zstd() {
        let hello = zstd::bulk::compress(b"hello ", 3).unwrap();
        let mut blob = hello.clone();
        blob.extend(encode_skippable(b"metadata").unwrap());
        blob.extend(zstd::bulk::compress(b"world", 3).unwrap());
        let (payload, len) = decode_skippable(&blob[hello.len()..]).unwrap();
        assert_eq!((payload, len), (&b"metadata"[..], 16));
        assert_eq!(zstd::stream::decode_all(&blob[..]).unwrap(), b"hello world");
    }
}
