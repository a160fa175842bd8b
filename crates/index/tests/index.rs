//! The index against a real RocksDB in a temporary directory.

use strata_index::{Index, Key, LayerNum, Loc, MAX_LOCS, OpenMode, Table};
use strata_types::{Blake3Digest, Sha256Digest};

fn chunk(i: u32) -> Key {
    Key::Chunk(Blake3Digest::of(&i.to_le_bytes()))
}

fn loc(layer: u32, file: u32) -> Loc {
    Loc { layer: LayerNum(layer), file, offset: u64::from(file) * 65536, len: 65536 }
}

#[test]
fn lookups_return_what_was_committed_in_input_order() {
    let dir = tempfile::tempdir().unwrap();
    let idx = Index::open(dir.path(), OpenMode::ReadWrite).unwrap();
    let mut b = idx.batch();
    for i in 0..10_000u32 {
        b.add_loc(chunk(i), loc(1, i));
    }
    idx.commit(b).unwrap();
    let keys: Vec<Key> = (0..20_000u32).rev().map(chunk).collect();
    let got = idx.lookup(&keys).unwrap();
    for (k, locs) in (0..20_000u32).rev().zip(&got) {
        if k < 10_000 {
            assert_eq!(locs, &vec![loc(1, k)], "key {k}");
        } else {
            assert!(locs.is_empty(), "key {k} should be unknown");
        }
    }
    // Kinds are distinct key spaces: the same digest as a file key is unknown.
    let d = Blake3Digest::of(&0u32.to_le_bytes());
    assert!(idx.lookup(&[Key::File(d)]).unwrap()[0].is_empty());
}

#[test]
fn locations_accumulate_up_to_the_cap_and_go_with_their_layer() {
    let dir = tempfile::tempdir().unwrap();
    let idx = Index::open(dir.path(), OpenMode::ReadWrite).unwrap();
    let k = Key::FileSha256(Sha256Digest::of(b"x"));
    for layer in 1..=(MAX_LOCS as u32 + 2) {
        let mut b = idx.batch();
        b.add_loc(k, loc(layer, 3));
        b.add_loc(k, loc(layer, 4)); // a second location in the same layer is not kept
        idx.commit(b).unwrap();
    }
    let got = idx.lookup(&[k]).unwrap().remove(0);
    assert_eq!(got.len(), MAX_LOCS);
    assert_eq!(got.iter().map(|l| l.layer.0).collect::<Vec<_>>(), (1..=MAX_LOCS as u32).collect::<Vec<_>>());
    let mut b = idx.batch();
    b.remove_layer_loc(k, LayerNum(2));
    idx.commit(b).unwrap();
    let got = idx.lookup(&[k]).unwrap().remove(0);
    assert!(!got.iter().any(|l| l.layer == LayerNum(2)));
    // gc-style retain removes the rest of a layer everywhere.
    let (removed, deleted, more) = idx.retain_locs(None, u64::MAX, |_, l| l.layer != LayerNum(1)).unwrap();
    assert!(more.is_none());
    assert_eq!((removed, deleted), (1, 0));
    let (_, deleted, _) = idx.retain_locs(None, u64::MAX, |_, _| false).unwrap();
    assert_eq!(deleted, 1);
    assert!(idx.lookup(&[k]).unwrap()[0].is_empty());
}

#[test]
fn records_files_and_layer_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let idx = Index::open(dir.path(), OpenMode::ReadWrite).unwrap();
    let mut b = idx.batch();
    let l1 = idx.next_layer_num(&mut b).unwrap();
    let l2 = idx.next_layer_num(&mut b).unwrap();
    assert_ne!(l1, l2);
    idx.put(&mut b, Table::Images, b"img", b"record");
    for f in 0..5 {
        idx.put_file(&mut b, l1, f, format!("l1-{f}").as_bytes());
        idx.put_file(&mut b, l2, f, format!("l2-{f}").as_bytes());
    }
    // Nothing is visible before commit.
    assert!(idx.get(Table::Images, b"img").unwrap().is_none());
    idx.commit(b).unwrap();
    assert_eq!(idx.get(Table::Images, b"img").unwrap().unwrap(), b"record");
    let mut seen = vec![];
    idx.for_each_file(l1, |n, v| {
        seen.push((n, String::from_utf8(v.to_vec()).unwrap()));
        true
    })
    .unwrap();
    assert_eq!(seen.len(), 5);
    assert!(seen.iter().all(|(_, v)| v.starts_with("l1-")));
    assert_eq!(idx.layers_with_files().unwrap(), vec![l1, l2]);
    let mut b = idx.batch();
    idx.delete_files(&mut b, l1);
    let l3 = idx.next_layer_num(&mut b).unwrap();
    assert!(l3.0 > l2.0);
    idx.commit(b).unwrap();
    assert_eq!(idx.layers_with_files().unwrap(), vec![l2]);
    assert_eq!(idx.scan(Table::Images).unwrap(), vec![(b"img".to_vec(), b"record".to_vec())]);
    assert!(idx.scan(Table::Containers).unwrap().is_empty());
}

#[test]
fn read_only_opens_see_committed_state_and_refuse_writes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let idx = Index::open(dir.path(), OpenMode::ReadWrite).unwrap();
        let mut b = idx.batch();
        b.add_loc(chunk(1), loc(1, 1));
        idx.commit(b).unwrap();
    }
    let ro = Index::open(dir.path(), OpenMode::ReadOnly).unwrap();
    assert_eq!(ro.lookup(&[chunk(1)]).unwrap()[0], vec![loc(1, 1)]);
    let mut b = ro.batch();
    b.add_loc(chunk(2), loc(1, 2));
    assert!(matches!(ro.commit(b), Err(strata_index::IndexError::ReadOnly { .. })));
}
