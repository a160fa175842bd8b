//! Varint encoding of location lists (LEB128).

use crate::key::{LayerNum, Loc};

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn get_varint(b: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = b.split_first()?;
        *b = rest;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

pub fn encode_locs(locs: &[Loc]) -> Vec<u8> {
    let mut out = Vec::with_capacity(locs.len() * 10);
    for l in locs {
        put_varint(&mut out, u64::from(l.layer.0));
        put_varint(&mut out, u64::from(l.file));
        put_varint(&mut out, l.offset);
        put_varint(&mut out, l.len);
    }
    out
}

/// Decodes a location list; `None` when the bytes are not a valid encoding.
pub fn decode_locs(mut b: &[u8]) -> Option<Vec<Loc>> {
    let mut out = Vec::with_capacity(2);
    while !b.is_empty() {
        let layer = u32::try_from(get_varint(&mut b)?).ok()?;
        let file = u32::try_from(get_varint(&mut b)?).ok()?;
        let offset = get_varint(&mut b)?;
        let len = get_varint(&mut b)?;
        out.push(Loc { layer: LayerNum(layer), file, offset, len });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locs_round_trip_and_garbage_is_rejected() {
        let locs = vec![
            Loc { layer: LayerNum(1), file: 7, offset: 0, len: 65536 },
            Loc { layer: LayerNum(u32::MAX), file: u32::MAX, offset: u64::MAX, len: u64::MAX },
        ];
        assert_eq!(decode_locs(&encode_locs(&locs)).unwrap(), locs);
        assert!(decode_locs(&[0x80]).is_none());
        assert!(decode_locs(&[1, 2, 3]).is_none());
        assert!(encode_locs(&locs[..1]).len() <= 8);
    }
}
