//! Varint encoding of location lists (LEB128), and the merge operands that change them.
//!
//! A location list (the value of a `locs` key) is a concatenation of locations, each four
//! varints. Additions are RocksDB merge operands, so a publish never reads the lists it
//! extends: an operand is a sequence of ops, each a tag byte then its data (`ADD` + a
//! location, `REMOVE_LAYER` + a layer number). Operands concatenate (partial merge is associative); the full merge applies
//! them in order to the base list: an add is kept while the list has fewer than
//! [`MAX_LOCS`] locations and none of the same layer.

use crate::key::{LayerNum, Loc, MAX_LOCS};

const OP_ADD: u8 = 1;
const OP_REMOVE_LAYER: u8 = 2;

/// A change of a location list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocOp {
    Add(Loc),
    RemoveLayer(LayerNum),
}

pub fn encode_op(op: &LocOp) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    match op {
        LocOp::Add(l) => {
            out.push(OP_ADD);
            out.extend(encode_locs(std::slice::from_ref(l)));
        }
        LocOp::RemoveLayer(n) => {
            out.push(OP_REMOVE_LAYER);
            put_varint(&mut out, u64::from(n.0));
        }
    }
    out
}

/// Applies the ops of `operand` to `locs`; `None` when the operand is not a valid encoding.
pub fn apply_operand(locs: &mut Vec<Loc>, mut operand: &[u8]) -> Option<()> {
    while let Some((&tag, rest)) = operand.split_first() {
        operand = rest;
        match tag {
            OP_ADD => {
                let layer = u32::try_from(get_varint(&mut operand)?).ok()?;
                let file = u32::try_from(get_varint(&mut operand)?).ok()?;
                let offset = get_varint(&mut operand)?;
                let len = get_varint(&mut operand)?;
                let loc = Loc { layer: LayerNum(layer), file, offset, len };
                if locs.len() < MAX_LOCS && !locs.iter().any(|l| l.layer == loc.layer) {
                    locs.push(loc);
                }
            }
            OP_REMOVE_LAYER => {
                let layer = u32::try_from(get_varint(&mut operand)?).ok()?;
                locs.retain(|l| l.layer.0 != layer);
            }
            _ => return None,
        }
    }
    Some(())
}

/// The full merge: `base` (a location list, maybe absent) with `operands` applied in order.
/// A damaged base or operand is skipped rather than failing every read of the key: the
/// locations are hints, each verified before use.
pub fn full_merge<'a>(base: Option<&[u8]>, operands: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut locs = base.and_then(decode_locs).unwrap_or_default();
    for op in operands {
        let mut next = locs.clone();
        if apply_operand(&mut next, op).is_some() {
            locs = next;
        }
    }
    encode_locs(&locs)
}

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

    #[test]
    fn operands_add_up_to_four_distinct_layers_and_remove_by_layer() {
        let loc = |layer, file| Loc { layer: LayerNum(layer), file, offset: 0, len: 10 };
        let ops: Vec<Vec<u8>> = [
            LocOp::Add(loc(1, 1)),
            LocOp::Add(loc(1, 2)), // same layer: ignored
            LocOp::Add(loc(2, 1)),
            LocOp::Add(loc(3, 1)),
            LocOp::Add(loc(4, 1)),
            LocOp::Add(loc(5, 1)), // full: ignored
            LocOp::RemoveLayer(LayerNum(2)),
            LocOp::Add(loc(6, 9)),
        ]
        .iter()
        .map(encode_op)
        .collect();
        let merged = full_merge(None, ops.iter().map(Vec::as_slice));
        assert_eq!(decode_locs(&merged).unwrap(), vec![loc(1, 1), loc(3, 1), loc(4, 1), loc(6, 9)]);
        // Concatenated operands (a partial merge) give the same result.
        let joined: Vec<u8> = ops.concat();
        assert_eq!(full_merge(None, [joined.as_slice()]), merged);
        // On top of an existing list; damaged operands are skipped.
        let base = encode_locs(&[loc(9, 9)]);
        let out = full_merge(Some(&base), [&[0xff, 1][..], &encode_op(&LocOp::Add(loc(8, 8)))]);
        assert_eq!(decode_locs(&out).unwrap(), vec![loc(9, 9), loc(8, 8)]);
    }
}
