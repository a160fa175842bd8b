//! Property test: random files and random edits (inserts, deletes, appends, in-place
//! changes) go through chunk -> index (a real RocksDB) -> assemble, and come out identical,
//! reusing every chunk the edit left intact.

mod common;

use std::fs::{self, File};

use proptest::prelude::*;
use strata_chunker::{Assembler, Expect, Fill, HashOptions, LocalRange, Piece, digest_bytes};
use strata_index::{Index, Key, LayerNum, Loc, OpenMode};

#[derive(Clone, Debug)]
enum Edit {
    Insert { at: usize, len: usize, seed: u64 },
    Delete { at: usize, len: usize },
    Append { len: usize, seed: u64 },
    Overwrite { at: usize, len: usize, seed: u64 },
}

fn edit_strategy() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1usize..20_000, any::<u64>()).prop_map(|(at, len, seed)| Edit::Insert { at, len, seed }),
        (any::<usize>(), 1usize..20_000).prop_map(|(at, len)| Edit::Delete { at, len }),
        (1usize..200_000, any::<u64>()).prop_map(|(len, seed)| Edit::Append { len, seed }),
        (any::<usize>(), 1usize..5_000, any::<u64>()).prop_map(|(at, len, seed)| Edit::Overwrite { at, len, seed }),
    ]
}

fn apply(data: &mut Vec<u8>, e: &Edit) {
    let n = data.len();
    match *e {
        Edit::Insert { at, len, seed } => {
            let at = if n == 0 { 0 } else { at % n };
            data.splice(at..at, common::random_bytes(len, seed));
        }
        Edit::Delete { at, len } if n > 0 => {
            let at = at % n;
            data.drain(at..(at + len).min(n));
        }
        Edit::Delete { .. } => {}
        Edit::Append { len, seed } => data.extend(common::random_bytes(len, seed)),
        Edit::Overwrite { at, len, seed } if n > 0 => {
            let at = at % n;
            let end = (at + len).min(n);
            data[at..end].copy_from_slice(&common::random_bytes(end - at, seed));
        }
        Edit::Overwrite { .. } => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn chunk_index_assemble_round_trips(size in 0usize..1_500_000, seed in any::<u64>(), edits in prop::collection::vec(edit_strategy(), 0..5)) {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("index"), OpenMode::ReadWrite).unwrap();
        let base = common::random_bytes(size, seed);
        let base_path = dir.path().join("base");
        fs::write(&base_path, &base).unwrap();
        let d = digest_bytes(&base, HashOptions::default());
        let mut b = index.batch();
        for c in &d.chunks {
            b.add_loc(Key::Chunk(c.digest), Loc { layer: LayerNum(1), file: 0, offset: c.offset, len: u64::from(c.len) });
        }
        index.commit(b).unwrap();

        let mut edited = base.clone();
        for e in &edits {
            apply(&mut edited, e);
        }
        let de = digest_bytes(&edited, HashOptions::default());
        let keys: Vec<Key> = de.chunks.iter().map(|c| Key::Chunk(c.digest)).collect();
        let found = index.lookup(&keys).unwrap();
        let pieces: Vec<Piece<'_>> = de.chunks.iter().zip(&found).map(|(c, locs)| Piece {
            len: u64::from(c.len),
            local: locs.first().map(|l| LocalRange { source: base_path.clone().into(), offset: l.offset, len: l.len, expect: Expect::Blake3(c.digest) }),
            fill: Fill::Bytes(&edited[c.offset as usize..][..c.len as usize]),
        }).collect();
        let out = dir.path().join("out");
        let f = File::options().read(true).write(true).create_new(true).open(&out).unwrap();
        let r = Assembler::new().assemble(&f, &pieces).unwrap();
        drop(f);
        prop_assert_eq!(fs::read(&out).unwrap(), edited.clone());
        prop_assert_eq!(r.rejected_local, 0);
        let found_bytes: u64 = de.chunks.iter().zip(&found).filter(|(_, l)| !l.is_empty()).map(|(c, _)| u64::from(c.len)).sum();
        prop_assert_eq!(r.reused(), found_bytes);
        if edits.is_empty() {
            prop_assert_eq!(r.reused(), edited.len() as u64);
        }
    }
}
