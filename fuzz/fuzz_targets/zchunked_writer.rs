//! Writer and reader agree: any tar that strata's parser and the zstd:chunked writer accept
//! becomes a blob that the reader validates, that decompresses to the input byte for byte, and
//! whose chunks and tar-split rebuild the input exactly.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use strata_layer::parse::TarReader;
use strata_layer::tarsplit::Record;
use strata_types::Sha256Digest;
use strata_zstd_chunked::{Limits, WriterOptions, ZstdChunkedWriter, open_layer};

fn write(tar: &[u8]) -> Option<(Vec<u8>, strata_zstd_chunked::WriteResult)> {
    let w = ZstdChunkedWriter::new(Vec::new(), WriterOptions { level: 1, ..WriterOptions::default() }).ok()?;
    let mut r = TarReader::with_tap(tar, w);
    loop {
        match r.next_header() {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => return None,
        }
    }
    r.into_tap().finish().ok()
}

fuzz_target!(|tar: &[u8]| {
    let Some((blob, result)) = write(tar) else { return };
    assert_eq!(result.diff_id, Sha256Digest::of(tar));
    assert_eq!(zstd::stream::decode_all(&blob[..]).expect("the blob is zstd"), tar);
    let plan = open_layer(&result.annotations, blob.len() as u64, &mut &blob[..], &Limits::default())
        .expect("strata's reader accepts strata's blob");
    let mut files = HashMap::new();
    for e in &plan.entries {
        let mut content = Vec::new();
        for c in &e.chunks {
            let range = c.blob_range.start as usize..c.blob_range.end as usize;
            content.extend(c.decode(&blob[range]).expect("each chunk decodes alone"));
        }
        files.insert(e.raw_name.clone().into_bytes(), content);
    }
    let mut rebuilt = Vec::new();
    for r in plan.tar_split_records() {
        match r.expect("the tar-split replays") {
            Record::Segment(b) => rebuilt.extend(b),
            Record::File { name, .. } => rebuilt.extend(&files[&name]),
        }
    }
    assert_eq!(rebuilt, tar);
});
