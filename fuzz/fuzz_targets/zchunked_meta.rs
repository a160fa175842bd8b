//! Footer, skippable frames, annotation values, RFC 3339 times and Go's view of tar headers:
//! no panics, and every value that parses survives its own encoding.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use strata_zstd_chunked::annotations::{self, parse_manifest_position, parse_tarsplit_position};
use strata_zstd_chunked::frame::{Footer, decode_skippable};
use strata_zstd_chunked::goheader::{self, GoParsed};
use strata_zstd_chunked::time::{format_rfc3339, parse_rfc3339};

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = Footer::decode(data) {
        assert_eq!(Footer::decode(&f.encode()), Ok(f));
    }
    if let Ok((payload, n)) = decode_skippable(data) {
        assert!(n == payload.len() + 8 && n <= data.len());
    }
    if let Ok(GoParsed::Entry { consumed, .. }) = goheader::parse(data, 1 << 16) {
        assert!(consumed <= data.len() && consumed % 512 == 0);
    }
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok((p, kind)) = parse_manifest_position(s) {
        assert_eq!(parse_manifest_position(&format!("{p}:{kind}")), Ok((p, kind)));
    }
    if let Ok(p) = parse_tarsplit_position(s) {
        assert_eq!(parse_tarsplit_position(&p.to_string()), Ok(p));
    }
    if let Ok(t) = parse_rfc3339(s)
        && let Ok(text) = format_rfc3339(t)
    {
        assert_eq!(parse_rfc3339(&text), Ok(t));
    }
    let mut m = BTreeMap::new();
    let mut parts = s.splitn(3, '\n');
    for key in [annotations::MANIFEST_CHECKSUM, annotations::MANIFEST_POSITION, annotations::TARSPLIT_POSITION] {
        if let Some(v) = parts.next() {
            m.insert(key.to_owned(), v.to_owned());
        }
    }
    if let Ok(annotations::LayerFormat::ZstdChunked(a)) = annotations::detect(&m) {
        assert_eq!(annotations::detect(&a.to_map()), Ok(annotations::LayerFormat::ZstdChunked(a)));
    }
});
