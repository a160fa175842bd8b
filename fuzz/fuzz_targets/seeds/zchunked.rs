//! Seeds for the zchunked_* targets, from a small layer written by strata's writer.

use strata_layer::parse::TarReader;
use strata_zstd_chunked::annotations::{LayerFormat, detect};
use strata_zstd_chunked::{WriterOptions, ZstdChunkedWriter};

fn small_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        h.set_path(name).unwrap();
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    let big: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    add("etc/", tar::EntryType::Directory, b"", None);
    add("etc/passwd", tar::EntryType::Regular, b"root:x:0:0\n", None);
    add("big", tar::EntryType::Regular, &big, None);
    add("zeros", tar::EntryType::Regular, &[0u8; 40_000], None);
    add("link", tar::EntryType::Symlink, b"", Some("etc/passwd"));
    add("hard", tar::EntryType::Link, b"", Some("etc/passwd"));
    b.into_inner().unwrap()
}

pub fn write(put: &dyn Fn(&str, &str, &[u8])) {
    let tar = small_tar();
    let w = ZstdChunkedWriter::new(Vec::new(), WriterOptions::default()).unwrap();
    let mut r = TarReader::with_tap(&tar[..], w);
    while r.next_header().unwrap().is_some() {}
    let (blob, result) = r.into_tap().finish().unwrap();
    let Ok(LayerFormat::ZstdChunked(a)) = detect(&result.annotations) else { panic!() };
    let ts = a.tar_split.unwrap();
    let slice =
        |p: strata_zstd_chunked::annotations::Position| &blob[p.offset as usize..(p.offset + p.length) as usize];
    let toc_json = zstd::stream::decode_all(slice(a.toc)).unwrap();
    let ts_json = zstd::stream::decode_all(slice(ts)).unwrap();
    let toc_text = String::from_utf8(toc_json.clone()).unwrap();
    put("zchunked_toc", "strata", &toc_json);
    put("zchunked_meta", "footer", &blob[blob.len() - 72..]);
    put("zchunked_meta", "position", b"95130555:678795:3516575:1");
    put("zchunked_meta", "time", b"2026-11-23T17:53:24.21672999+02:00");
    put("zchunked_meta", "header", &tar[..1536]);
    put("zchunked_writer", "small", &tar);
    put("zchunked_reader", "raw", &[&[0u8][..], &blob].concat());
    let toc_doc: serde_json::Value = serde_json::from_slice(&toc_json).unwrap();
    let digest = toc_doc["tarSplitDigest"].as_str().unwrap().to_owned();
    let toc_placeholder = toc_text.replace(&digest, "TSDIGEST");
    let data = &blob[..(a.toc.offset - 8) as usize];
    let assembled = [&[1u8][..], toc_placeholder.as_bytes(), &[0xff, 0xfe], &ts_json, &[0xff, 0xfe], data].concat();
    put("zchunked_reader", "assembled", &assembled);
}
